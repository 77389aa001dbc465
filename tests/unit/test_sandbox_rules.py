"""Unit tests of the sandbox's record rules, fault draws and start settings."""

from __future__ import annotations

import email.utils
import time
from collections import Counter
from pathlib import Path

import pytest

from grip.errors import ConfigError
from sandbox.config import FaultSettings, build_config, demo_application
from sandbox.faults import DROP, PASS, RATE_LIMITED, Faults, TokenBucket
from sandbox.rules import Push, Rejected, check_push, is_admin_locked, merge

APP = demo_application()


def test_check_push_drops_control_keys_and_normalises_metadata() -> None:
    push = check_push(
        {
            "type_id": "382",
            "registration_id": "R1",
            "default_container_id": 90001,
            "generate_relationships": 1,
            "new_event_join_type": "join_and_patch",
            "metadata_raw": {"a": {"RU-RU": "да"}, "b": [{"en-GB": 1}]},
            "extra": [1],
        },
        APP,
    )

    assert push == Push(
        registration_id="R1",
        container_id=90001,
        fields={
            "type_id": 382,
            "registration_id": "R1",
            "metadata_raw": {"a": [{"ru-ru": "да"}], "b": [{"en-gb": 1}]},
            "extra": [1],
        },
    )


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"type_id": 380}, "registration_id is missing"),
        ({"registration_id": "R"}, "type_id is missing"),
        ({"registration_id": "R", "type_id": 1}, "unknown type_id 1"),
        ({"registration_id": "R", "type_id": 380, "default_container_id": 2}, "container"),
        ({"registration_id": "R", "type_id": 380, "metadata_raw": {"k": {"xx": "1"}}}, "'xx'"),
        ({"registration_id": "R", "type_id": 380, "headline": "x" * 141}, "headline has 141"),
    ],
)
def test_check_push_rejects(body: dict[str, object], match: str) -> None:
    with pytest.raises(Rejected, match=match):
        check_push(body, APP)


def test_merge_patches_fields_and_metadata_keys() -> None:
    existing = {"name": "A", "job_title": "B", "metadata_raw": {"x": [{"en-gb": "1"}]}}
    push = Push("R", 1, {"job_title": "C", "metadata_raw": {"y": []}})

    merged = merge(existing, push)

    assert merged == {
        "name": "A",
        "job_title": "C",
        "metadata_raw": {"x": [{"en-gb": "1"}], "y": []},
    }
    assert existing["job_title"] == "B"


@pytest.mark.parametrize(("rid", "locked"), [("ADMIN", True), ("xAdMinx", True), ("adm", False)])
def test_admin_lock_matches_any_case(rid: str, locked: bool) -> None:
    assert is_admin_locked(rid) is locked


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0.0)

    taken = [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0), bucket.take(0.5)]

    assert taken == [True, True, False, True]
    assert bucket.take(0.5) is False
    assert [bucket.take(10.0), bucket.take(10.0), bucket.take(10.0)] == [True, True, False]


def test_fault_draws_follow_their_shares_and_seed() -> None:
    settings = FaultSettings(
        error_500_share=0.1, error_502_share=0.2, error_503_share=0.3, drop_share=0.1, seed=4
    )

    faults = Faults(settings)
    counts = Counter(faults.decide().outcome for _ in range(20000))
    again = Faults(settings)
    replay = [again.decide().outcome for _ in range(50)]
    fresh = Faults(settings)

    for outcome, share in ((500, 0.1), (502, 0.2), (503, 0.3), (DROP, 0.1), (PASS, 0.3)):
        assert abs(counts[outcome] / 20000 - share) < 0.02, (outcome, counts)
    assert replay == [fresh.decide().outcome for _ in range(50)]


def test_rate_limited_requests_draw_no_fault() -> None:
    faults = Faults(FaultSettings(rate_limit_rps=0.001, error_500_share=1))

    assert [faults.decide().outcome for _ in range(3)] == [500, RATE_LIMITED, RATE_LIMITED]


def test_latency_and_jitter_make_the_delay() -> None:
    faults = Faults(FaultSettings(latency_ms=100, jitter_ms=50, seed=1))

    delays = [faults.decide().delay_s for _ in range(200)]

    assert all(0.1 <= d <= 0.15 for d in delays)
    assert max(delays) - min(delays) > 0.04


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (FaultSettings(retry_after_seconds=3), "3"),
        (FaultSettings(retry_after_seconds=0.5), "0.5"),
        (FaultSettings(retry_after="none"), None),
    ],
)
def test_retry_after_header(settings: FaultSettings, expected: str | None) -> None:
    assert Faults(settings).retry_after_header() == expected


def test_retry_after_date_is_never_early() -> None:
    header = Faults(FaultSettings(retry_after="date", retry_after_seconds=2)).retry_after_header()

    assert header is not None
    assert email.utils.parsedate_to_datetime(header).timestamp() >= time.time() + 1


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"nope": 1}, "unknown setting"),
        ({"slow_share": 2}, "slow_share"),
        ({"error_500_share": 0.5, "drop_share": 0.6}, "add up to 1 or less"),
    ],
)
def test_fault_settings_updates_are_checked(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FaultSettings().updated(changes)


def test_build_config_reads_a_yaml_file_and_lets_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.yaml"
    path.write_text(
        "applications:\n"
        "  - id: 3\n    name: Fair\n    token: t\n    languages: [EN-GB, de-DE]\n"
        "    types: {7: Visitor}\n    containers: [70, 71]\n"
        "faults: {latency_ms: 10, slow_ms: 5}\n"
    )

    config = build_config(config_file=path, fault_overrides={"latency_ms": 1})

    (app,) = config.applications
    assert app.languages == ("en-gb", "de-de")
    assert app.types == {7: "Visitor"}
    assert app.default_container == 70
    assert (config.faults.latency_ms, config.faults.slow_ms) == (1.0, 5.0)


def test_build_config_without_a_file_serves_the_demo() -> None:
    config = build_config(token="t-1")

    (app,) = config.applications
    assert (app.id, app.name, app.token) == (7001, "Demo Expo", "t-1")
    assert app.languages == ("en-gb", "ru-ru")
    assert app.types == {380: "Visitor", 381: "Exhibitor", 382: "Representative"}
    assert app.containers == (90001,)
