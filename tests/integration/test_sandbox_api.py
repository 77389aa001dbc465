"""The sandbox's registration endpoints over real HTTP: auth, validation, upsert, reads, log."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests

from tests.harness.sandbox import SandboxServer

pytestmark = pytest.mark.integration


def push(
    sandbox: SandboxServer, body: Any, token: str | None = None, **kwargs: Any
) -> requests.Response:
    headers = {} if token == "" else {"Authorization": f"Bearer {token or sandbox.token}"}
    if isinstance(body, str | bytes):
        return sandbox.session.post(
            sandbox.base_url + "/thing/register", data=body, headers=headers, timeout=10, **kwargs
        )
    return sandbox.session.post(
        sandbox.base_url + "/thing/register", json=body, headers=headers, timeout=10, **kwargs
    )


def last_push_line(sandbox: SandboxServer) -> dict[str, Any]:
    return next(line for line in sandbox.log(20) if line["method"] == "POST")


def record(rid: str = "B23292", **fields: Any) -> dict[str, Any]:
    return {"type_id": 380, "default_container_id": 90001, "registration_id": rid, **fields}


SEED_EXAMPLE = {
    "type_id": 380,
    "default_container_id": 90001,
    "generate_relationships": 1,
    "new_event_join_type": "join_and_patch",
    "name": "Claudio Cadeddu",
    "first_name": "Claudio",
    "last_name": "Cadeddu",
    "job_title": "FOUNDER",
    "company_name": "Example.com Ltd",
    "headline": "Founder - Example.com Ltd",
    "summary": "Example.com Ltd is specialized in opera. - Example.com специализируется на опере.",
    "email": "jou@example.com",
    "registration_id": "B23292",
    "location": "City, Country",
    "location_code": "en-GB",
    "metadata_raw": {
        "exhibitor_id": [{"en-gb": "65322"}],
        "product_category_provided": [
            {"en-gb": "Tour Operator", "ru-ru": "Туроператор"},
            {"en-gb": "Leisure", "ru-ru": "Многопрофильный"},
        ],
    },
}


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({}, "Authorization header is missing"),
        ({"Authorization": "Bearer wrong-token"}, "token is unknown"),
        ({"Authorization": "Bearer "}, "must be 'Bearer <token>'"),
        ({"Authorization": "Basic c2FuZGJveA=="}, "must be 'Bearer <token>'"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/thing/register"), ("GET", "/thing/register/detail"), ("GET", "/thing/1")],
)
def test_requests_without_a_known_token_get_401(
    sandbox: SandboxServer, headers: dict[str, str], match: str, method: str, path: str
) -> None:
    response = sandbox.session.request(
        method, sandbox.base_url + path, json=record(), headers=headers, timeout=10
    )

    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False
    assert re.search(match, body["message"])
    assert "wrong-token" not in body["message"]
    assert sandbox.profiles() == []


def test_the_token_selects_no_other_application(sandbox: SandboxServer) -> None:
    response = push(sandbox, record(), token=sandbox.token + "x")

    assert response.status_code == 401


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "must be one JSON object, got a JSON array"),
        ('"text"', "must be one JSON object, got a JSON string"),
        ("null", "must be one JSON object, got a JSON null"),
        ({"type_id": 380}, "registration_id is missing"),
        ({"type_id": 380, "registration_id": ""}, "registration_id is missing"),
        ({"type_id": 380, "registration_id": 12}, "registration_id must be a non-empty string"),
        ({"type_id": 380, "registration_id": "   "}, "registration_id must be a non-empty"),
        ({"registration_id": "R1"}, "type_id is missing"),
        ({"registration_id": "R1", "type_id": None}, "type_id is missing"),
        ({"registration_id": "R1", "type_id": 999}, r"unknown type_id 999; .*380 \(Visitor\)"),
        ({"registration_id": "R1", "type_id": "visitor"}, "unknown type_id 'visitor'"),
        ({"registration_id": "R1", "type_id": True}, "unknown type_id True"),
        (record(default_container_id=12345), "unknown default_container_id 12345.*90001"),
        (record(default_container_id="abc"), "unknown default_container_id 'abc'"),
        (record(metadata_raw={"k": [{"de-de": "x"}]}), "language 'de-de'.*not enabled"),
        (record(metadata_raw={"k": {"fr": "x"}}), "language 'fr'.*en-gb, ru-ru"),
        (record(metadata_raw=[{"en-gb": "x"}]), "metadata_raw must be an object"),
        (record(metadata_raw={"k": "x"}), r"metadata_raw\.k must be a list"),
        (record(metadata_raw={"k": ["x"]}), r"metadata_raw\.k\[0\] must be a \{language"),
        (record(metadata_raw={"k": [{"en-gb": {"a": 1}}]}), r"metadata_raw\.k\[0\]\.en-gb must"),
        (record(headline="h" * 141), "headline has 141 characters; Grip allows at most 140"),
        (record(summary="s" * 2001), "summary has 2001 characters; Grip allows at most 2000"),
        (record(id=5), "id is set by Grip"),
        (record(container_ids=[1]), "container_ids is set by Grip"),
    ],
)
def test_invalid_pushes_get_400_and_store_nothing(
    sandbox: SandboxServer, body: Any, match: str
) -> None:
    response = push(sandbox, body)

    assert response.status_code == 400
    answer = response.json()
    assert answer["success"] is False
    assert re.search(match, answer["message"]), answer["message"]
    assert sandbox.profiles() == []
    assert last_push_line(sandbox)["reason"] == answer["message"]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        # Each body breaks two rules; the earlier rule in Grip's order is the one reported.
        ({"type_id": 999}, "registration_id is missing"),
        ({"registration_id": "R1", "default_container_id": 5}, "type_id is missing"),
        (record(type_id=999, default_container_id=5), "unknown type_id"),
        (record(default_container_id=5, metadata_raw={"k": {"de": "x"}}), "default_container_id"),
        (record(metadata_raw={"k": {"de": "x"}}, headline="h" * 200), "language 'de'"),
    ],
)
def test_rules_are_checked_in_grips_order(sandbox: SandboxServer, body: Any, match: str) -> None:
    response = push(sandbox, body)

    assert response.status_code == 400
    assert re.search(match, response.json()["message"])


def test_auth_is_checked_before_the_body(sandbox: SandboxServer) -> None:
    response = push(sandbox, "not json", token="wrong")

    assert response.status_code == 401


def test_limits_are_inclusive(sandbox: SandboxServer) -> None:
    response = push(sandbox, record(headline="h" * 140, summary="s" * 2000))

    assert response.status_code == 200
    (profile,) = sandbox.profiles()
    assert len(profile["headline"]) == 140
    assert len(profile["summary"]) == 2000


# --- upsert -----------------------------------------------------------------------------------


def test_the_seed_example_is_stored_as_the_client_would_compare_it(sandbox: SandboxServer) -> None:
    before = int(time.time())
    response = push(sandbox, SEED_EXAMPLE)

    assert response.status_code == 200
    answer = response.json()
    assert answer["success"] is True
    profile_id = answer["data"]["id"]
    assert isinstance(profile_id, int)
    assert answer["data"] == {"id": profile_id, "uri": f"/1/thing/{profile_id}", "created": True}

    (profile,) = sandbox.profiles()
    control = {"default_container_id", "generate_relationships", "new_event_join_type"}
    expected = {key: value for key, value in SEED_EXAMPLE.items() if key not in control}
    assert profile.pop("id") == profile_id
    assert profile.pop("container_ids") == [90001]
    created_at, updated_at = profile.pop("created_at"), profile.pop("updated_at")
    assert isinstance(created_at, int)
    assert before <= created_at == updated_at <= time.time() + 1
    assert profile == expected


def test_a_push_without_container_joins_the_applications_first_container(
    sandbox: SandboxServer,
) -> None:
    body = record()
    del body["default_container_id"]
    push(sandbox, body)

    assert sandbox.profiles()[0]["container_ids"] == [90001]


def test_numeric_text_ids_are_read_as_numbers(sandbox: SandboxServer) -> None:
    response = push(sandbox, record(type_id="381", default_container_id="90001"))

    assert response.status_code == 200
    (profile,) = sandbox.profiles()
    assert profile["type_id"] == 381
    assert profile["container_ids"] == [90001]


def test_unknown_top_level_keys_are_stored_as_sent(sandbox: SandboxServer) -> None:
    push(sandbox, record(badge_type={"level": "gold"}, tags=["a", "b"], application_id=7001))

    (profile,) = sandbox.profiles()
    assert profile["badge_type"] == {"level": "gold"}
    assert profile["tags"] == ["a", "b"]
    assert profile["application_id"] == 7001


def test_both_metadata_shapes_are_stored_as_lists_with_lower_case_languages(
    sandbox: SandboxServer,
) -> None:
    metadata = {
        "scan_id": {"EN-GB": "S-1"},
        "categories": [{"en-GB": "Leisure", "RU-ru": "Отдых"}, {"en-gb": "Luxury"}],
        "empty": [],
    }
    response = push(sandbox, record(metadata_raw=metadata))

    assert response.status_code == 200
    assert sandbox.profiles()[0]["metadata_raw"] == {
        "scan_id": [{"en-gb": "S-1"}],
        "categories": [{"en-gb": "Leisure", "ru-ru": "Отдых"}, {"en-gb": "Luxury"}],
        "empty": [],
    }


def test_join_and_patch_overwrites_sent_fields_and_keeps_the_others(
    sandbox: SandboxServer,
) -> None:
    first = push(
        sandbox,
        record(
            name="Ann Lee",
            job_title="Buyer",
            email="ann@example.com",
            metadata_raw={"a": [{"en-gb": "1"}], "b": [{"en-gb": "2"}]},
        ),
    ).json()["data"]
    created = sandbox.profiles()[0]
    time.sleep(1.05)  # updated_at counts whole seconds

    second = push(
        sandbox,
        record(type_id=381, job_title="Director", metadata_raw={"b": {"ru-ru": "два"}}),
    ).json()["data"]

    assert first["created"] is True
    assert second == {"id": first["id"], "uri": f"/1/thing/{first['id']}", "created": False}
    (profile,) = sandbox.profiles()
    assert profile["type_id"] == 381
    assert profile["job_title"] == "Director"
    assert profile["name"] == "Ann Lee"
    assert profile["email"] == "ann@example.com"
    assert profile["metadata_raw"] == {"a": [{"en-gb": "1"}], "b": [{"ru-ru": "два"}]}
    assert profile["created_at"] == created["created_at"]
    assert profile["updated_at"] > created["updated_at"]
    assert [line["reason"] for line in sandbox.log(10) if line["method"] == "POST"] == [
        "updated",
        "created",
    ]


def test_an_identical_push_answers_created_false_and_changes_nothing(
    sandbox: SandboxServer,
) -> None:
    push(sandbox, record(name="Same"))
    before = sandbox.profiles()

    answer = push(sandbox, record(name="Same")).json()

    assert answer["data"]["created"] is False
    assert sandbox.profiles() == before
    assert last_push_line(sandbox)["reason"] == "unchanged"


def test_joining_another_container_adds_it_once(tmp_path: Any) -> None:
    config = tmp_path / "two-containers.yaml"
    config.write_text(
        "applications:\n"
        "  - {id: 42, name: Two Halls, token: t-42, languages: [en-gb],\n"
        "     types: {1: Visitor}, containers: [501, 502]}\n"
    )
    with SandboxServer(["--config", str(config)], token="t-42") as server:
        for container in (501, 502, 502, 501):
            body = {"registration_id": "R1", "type_id": 1, "default_container_id": container}
            assert push(server, body).status_code == 200

        (profile,) = server.profiles()
        assert profile["container_ids"] == [501, 502]


def test_the_same_registration_id_in_two_applications_is_two_profiles(tmp_path: Any) -> None:
    config = tmp_path / "two-apps.yaml"
    config.write_text(
        "applications:\n"
        "  - {id: 1, name: Spring Fair, token: t-1, languages: [en-gb],\n"
        "     types: {10: Visitor}, containers: [100]}\n"
        "  - {id: 2, name: Autumn Fair, token: t-2, languages: [de-de, EN-GB],\n"
        "     types: {20: Visitor, 21: Exhibitor}, containers: [200]}\n"
    )
    with SandboxServer(["--config", str(config)], token="t-1") as server:
        one = push(server, {"registration_id": "R1", "type_id": 10, "name": "A"}, token="t-1")
        two = push(
            server,
            {"registration_id": "R1", "type_id": 21, "metadata_raw": {"k": {"de-DE": "ja"}}},
            token="t-2",
        )
        wrong_type = push(server, {"registration_id": "R2", "type_id": 10}, token="t-2")
        wrong_language = push(
            server,
            {"registration_id": "R2", "type_id": 10, "metadata_raw": {"k": {"de-de": "x"}}},
            token="t-1",
        )

        assert one.json()["data"]["created"] is True
        assert two.json()["data"]["created"] is True
        assert one.json()["data"]["id"] != two.json()["data"]["id"]
        assert wrong_type.status_code == 400
        assert wrong_language.status_code == 400
        (first,) = server.profiles("t-1")
        (second,) = server.profiles("t-2")
        assert (first["name"], first["container_ids"]) == ("A", [100])
        assert (second["type_id"], second["container_ids"]) == (21, [200])
        assert second["metadata_raw"] == {"k": [{"de-de": "ja"}]}
        other = server.session.get(
            f"{server.base_url}/thing/{first['id']}",
            headers={"Authorization": "Bearer t-2"},
            timeout=10,
        )
        assert other.status_code == 404


# --- the admin lock ---------------------------------------------------------------------------


@pytest.mark.parametrize("rid", ["admin", "ADMIN-7", "x-Admin-1", "sysadmin"])
def test_an_admin_profile_accepts_later_pushes_and_changes_nothing(
    sandbox: SandboxServer, rid: str
) -> None:
    first = push(sandbox, record(rid, name="Original", metadata_raw={"k": {"en-gb": "1"}}))
    before = sandbox.profiles()

    later = push(sandbox, record(rid, name="Changed", type_id=381, metadata_raw={"j": []}))

    assert first.json()["data"]["created"] is True
    assert later.status_code == 200
    assert later.json() == {
        "success": True,
        "data": {"id": before[0]["id"], "uri": f"/1/thing/{before[0]['id']}", "created": False},
    }
    assert sandbox.profiles() == before
    assert last_push_line(sandbox)["reason"] == "admin lock"


def test_admin_lock_still_validates_the_push(sandbox: SandboxServer) -> None:
    push(sandbox, record("admin-1"))

    response = push(sandbox, record("admin-1", type_id=999))

    assert response.status_code == 400


def test_a_similar_word_does_not_lock(sandbox: SandboxServer) -> None:
    push(sandbox, record("adm-in", name="Original"))
    push(sandbox, record("adm-in", name="Changed"))

    assert sandbox.profiles()[0]["name"] == "Changed"


# --- reads ------------------------------------------------------------------------------------


def _detail(sandbox: SandboxServer, **params: Any) -> requests.Response:
    return sandbox.session.get(
        sandbox.base_url + "/thing/register/detail",
        params=params,
        headers=sandbox.headers,
        timeout=10,
    )


def test_detail_pages_until_an_empty_page(sandbox: SandboxServer) -> None:
    ids = [push(sandbox, record(f"P{n:03d}")).json()["data"]["id"] for n in range(7)]

    pages = [_detail(sandbox, page=page, limit=3).json() for page in (1, 2, 3, 4)]

    assert all(page["success"] is True for page in pages)
    assert [[p["id"] for p in page["data"]] for page in pages] == [ids[:3], ids[3:6], ids[6:], []]
    assert [p["registration_id"] for p in pages[1]["data"]] == ["P003", "P004", "P005"]


def test_detail_defaults_to_page_1_of_100(sandbox: SandboxServer) -> None:
    for n in range(101):
        push(sandbox, record(f"D{n:03d}"))

    default = _detail(sandbox).json()["data"]
    big = _detail(sandbox, limit=1000).json()["data"]

    assert len(default) == 100
    assert default[0]["registration_id"] == "D000"
    assert len(big) == 101


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"page": 0}, "page must be from 1"),
        ({"page": "x"}, "page must be a whole number"),
        ({"limit": 0}, "limit must be from 1 to 1000"),
        ({"limit": 1001}, "limit must be from 1 to 1000, got 1001"),
        ({"limit": "1.5"}, "limit must be a whole number"),
    ],
)
def test_detail_refuses_bad_paging(
    sandbox: SandboxServer, params: dict[str, Any], match: str
) -> None:
    response = _detail(sandbox, **params)

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert re.search(match, response.json()["message"])


def test_thing_by_id_returns_the_stored_profile(sandbox: SandboxServer) -> None:
    profile_id = push(sandbox, SEED_EXAMPLE).json()["data"]["id"]

    response = sandbox.session.get(
        f"{sandbox.base_url}/thing/{profile_id}", headers=sandbox.headers, timeout=10
    )

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": sandbox.profiles()[0]}


@pytest.mark.parametrize("thing_id", ["999999", "abc", "-1"])
def test_an_unknown_thing_is_404(sandbox: SandboxServer, thing_id: str) -> None:
    response = sandbox.session.get(
        f"{sandbox.base_url}/thing/{thing_id}", headers=sandbox.headers, timeout=10
    )

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "message": f"thing {thing_id} not found in application 7001",
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nothing", 404),
        ("DELETE", "/thing/register", 405),
        ("PUT", "/thing/register/detail", 405),
    ],
)
def test_other_api_routes_answer_the_error_envelope(
    sandbox: SandboxServer, method: str, path: str, status: int
) -> None:
    response = sandbox.session.request(
        method, sandbox.base_url + path, headers=sandbox.headers, timeout=10
    )

    assert response.status_code == status
    assert response.json()["success"] is False
    assert path in response.json()["message"]


# --- log and page -----------------------------------------------------------------------------


def test_the_log_lists_api_requests_newest_first(sandbox: SandboxServer) -> None:
    push(sandbox, record("L1"))
    push(sandbox, record("L2", type_id=1))
    push(sandbox, record("L1", name="x"))
    _detail(sandbox)
    sandbox.stats()  # sandbox routes are not logged

    lines = sandbox.log()

    assert [
        (line["method"], line["path"], line["status"], line["registration_id"], line["reason"])
        for line in lines
    ] == [
        ("GET", "/1/thing/register/detail", 200, None, None),
        ("POST", "/1/thing/register", 200, "L1", "updated"),
        ("POST", "/1/thing/register", 400, "L2", lines[2]["reason"]),
        ("POST", "/1/thing/register", 200, "L1", "created"),
    ]
    assert lines[2]["reason"].startswith("unknown type_id 1")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ln["time"]) for ln in lines)
    assert [line["registration_id"] for line in sandbox.log(limit=2)] == [None, "L1"]


def test_log_limit_is_checked(sandbox: SandboxServer) -> None:
    response = sandbox.session.get(sandbox.root_url + "/_sandbox/log?limit=0", timeout=10)

    assert response.status_code == 400


def test_the_page_shows_registrations_and_log_lines(sandbox: SandboxServer) -> None:
    push(sandbox, record("PAGE-1", name="<b>Ann</b>", metadata_raw={"k": {"ru-ru": "Отдых"}}))
    push(sandbox, record("PAGE-2", type_id=999))

    response = sandbox.session.get(sandbox.root_url + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Data &amp; Language Management" in page
    assert "Demo Expo" in page
    assert "en-gb, ru-ru" in page
    assert "380 Visitor" in page
    assert "PAGE-1" in page
    assert "Отдых" in page
    assert "&lt;b&gt;Ann&lt;/b&gt;" in page
    assert "<b>Ann</b>" not in page
    assert "PAGE-2" in page
    assert "unknown type_id 999" in page
    assert "1 stored" in page
