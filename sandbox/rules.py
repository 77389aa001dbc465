"""Grip's rules for one pushed record: validation, metadata normalisation, join-and-patch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.config import Application

HEADLINE_MAX = 140
SUMMARY_MAX = 2000

# Keys that steer the push itself and are not stored on the profile.
CONTROL_KEYS = frozenset({"default_container_id", "generate_relationships", "new_event_join_type"})
# Keys the sandbox stores itself; a push cannot set them.
RESERVED_KEYS = frozenset({"id", "container_ids", "created_at", "updated_at"})

_SCALARS = (str, int, float, bool)


class Rejected(Exception):
    """A push that Grip refuses with 400; the message is sent back to the caller."""

    def __init__(self, message: str, registration_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.registration_id = registration_id


@dataclass(frozen=True, slots=True)
class Push:
    """One accepted push, ready to be upserted.

    Attributes:
        registration_id: The upsert key within the application.
        container_id: The container the profile joins.
        fields: Profile fields to store (control keys removed, ``metadata_raw`` normalised).
    """

    registration_id: str
    container_id: int
    fields: dict[str, Any]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def check_push(body: Any, app: Application) -> Push:
    """Apply Grip's rules to a decoded request body, in the order Grip checks them.

    Order: a JSON object, required keys, ``type_id``, container, languages, lengths.

    Args:
        body: The decoded JSON body.
        app: The application the token selects.

    Returns:
        The push to upsert.

    Raises:
        Rejected: The first rule the body breaks, with a message naming the key.
    """
    if not isinstance(body, dict):
        raise Rejected(f"the body must be one JSON object, got a JSON {_json_kind(body)}")

    registration_id = body.get("registration_id")
    rid = registration_id if isinstance(registration_id, str) else None
    if registration_id is None or registration_id == "":
        raise Rejected("registration_id is missing; every record needs one")
    if rid is None or not rid.strip():
        raise Rejected(
            f"registration_id must be a non-empty string, got {_json_kind(registration_id)}"
        )
    if "type_id" not in body or body["type_id"] is None:
        raise Rejected("type_id is missing; send one of the application's data type ids", rid)

    type_id = _as_int(body["type_id"])
    if type_id is None or type_id not in app.types:
        known = ", ".join(f"{tid} ({name})" for tid, name in sorted(app.types.items()))
        raise Rejected(f"unknown type_id {body['type_id']!r}; this application has {known}", rid)

    container_id = app.default_container
    if body.get("default_container_id") is not None:
        sent = _as_int(body["default_container_id"])
        if sent is None or sent not in app.containers:
            known_containers = ", ".join(str(c) for c in app.containers)
            raise Rejected(
                f"unknown default_container_id {body['default_container_id']!r}; "
                f"this application has container(s) {known_containers}",
                rid,
            )
        container_id = sent

    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key in CONTROL_KEYS:
            continue
        if key in RESERVED_KEYS:
            raise Rejected(f"{key} is set by Grip and cannot be pushed; leave it out", rid)
        fields[key] = value
    fields["registration_id"] = rid
    fields["type_id"] = type_id
    if "metadata_raw" in fields:
        fields["metadata_raw"] = normalise_metadata(fields["metadata_raw"], app, rid)

    for key, limit in (("headline", HEADLINE_MAX), ("summary", SUMMARY_MAX)):
        value = fields.get(key)
        if isinstance(value, str) and len(value) > limit:
            raise Rejected(f"{key} has {len(value)} characters; Grip allows at most {limit}", rid)
    return Push(registration_id=rid, container_id=container_id, fields=fields)


def normalise_metadata(raw: Any, app: Application, rid: str | None = None) -> dict[str, Any]:
    """Check ``metadata_raw`` and bring it to the list shape with lower-case language codes.

    Both shapes Grip accepts are read: ``{key: [{lang: text}, ...]}`` and ``{key: {lang: text}}``
    (a single map becomes a one-item list).

    Raises:
        Rejected: The shape is wrong or a language is not enabled for the application.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Rejected(
            "metadata_raw must be an object of {key: [{language: text}, ...]}, "
            f"got a JSON {_json_kind(raw)}",
            rid,
        )
    enabled = app.languages
    result: dict[str, Any] = {}
    for key, values in raw.items():
        items = [values] if isinstance(values, dict) else values
        if not isinstance(items, list):
            raise Rejected(
                f"metadata_raw.{key} must be a list of {{language: text}} objects or one such "
                f"object, got a JSON {_json_kind(values)}",
                rid,
            )
        normalised = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise Rejected(
                    f"metadata_raw.{key}[{index}] must be a {{language: text}} object, "
                    f"got a JSON {_json_kind(item)}",
                    rid,
                )
            entry: dict[str, Any] = {}
            for lang, text in item.items():
                code = lang.lower()
                if code not in enabled:
                    raise Rejected(
                        f"metadata_raw.{key}[{index}] uses language {lang!r}, which is not "
                        f"enabled for this application (enabled: {', '.join(enabled)})",
                        rid,
                    )
                if not isinstance(text, _SCALARS):
                    raise Rejected(
                        f"metadata_raw.{key}[{index}].{lang} must be text, "
                        f"got a JSON {_json_kind(text)}",
                        rid,
                    )
                entry[code] = text
            normalised.append(entry)
        result[key] = normalised
    return result


def merge(existing: dict[str, Any], push: Push) -> dict[str, Any]:
    """Join-and-patch: the sent fields overwrite, the others are kept; metadata keys replace.

    Args:
        existing: The stored profile fields.
        push: The accepted push.

    Returns:
        The new profile fields; ``existing`` is not changed.
    """
    merged = {**existing, **push.fields}
    if "metadata_raw" in push.fields and isinstance(existing.get("metadata_raw"), dict):
        merged["metadata_raw"] = {**existing["metadata_raw"], **push.fields["metadata_raw"]}
    return merged


def is_admin_locked(registration_id: str) -> bool:
    """Tell whether Grip refuses changes to this profile (its id contains "admin")."""
    return "admin" in registration_id.lower()


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
