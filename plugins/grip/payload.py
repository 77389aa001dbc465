"""The canonical text of a payload and its content hash: what the plan compares run to run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

Payload = dict[str, Any]
"""One Grip record as sent to ``POST /thing/register``."""


def canonical_json(payload: Mapping[str, Any]) -> str:
    """Return the payload as compact JSON with sorted keys, so equal content gives equal text.

    Key order and insignificant whitespace never change the result; non-ASCII text is kept as
    is (not escaped), so Cyrillic names cost two bytes a letter rather than six.
    """
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(canonical: str) -> str:
    """Return the hex digest the ledger keeps for a payload's canonical JSON text."""
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()


def payload_hash(payload: Mapping[str, Any]) -> str:
    """Return the content hash of a payload dict (its canonical JSON, hashed)."""
    return content_hash(canonical_json(payload))
