"""SQLite state of the sandbox: stored profiles and the request log."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox.rules import Push, is_admin_locked, merge

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profile (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id INTEGER NOT NULL,
    registration_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    container_ids TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (application_id, registration_id)
);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER,
    registration_id TEXT,
    reason TEXT
);
"""


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What one push did to the store.

    Attributes:
        id: Profile id.
        created: True when the profile is new.
        reason: ``created``, ``updated``, ``unchanged`` or ``admin lock``.
    """

    id: int
    created: bool
    reason: str


class Store:
    """Profiles and request log in one SQLite database, safe to share between threads.

    Every method takes one lock around its statements, so a read-modify-write upsert is atomic
    whatever the server's concurrency.

    Args:
        path: SQLite file path, or ``:memory:``.
    """

    def __init__(self, path: str = ":memory:"):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def upsert(self, application_id: int, push: Push, now: int | None = None) -> UpsertResult:
        """Create the profile, or join it to the container and patch it (join-and-patch).

        A stored profile whose registration id contains "admin" is left as it is.
        """
        now = int(time.time()) if now is None else now
        with self._lock:
            row = self._db.execute(
                "SELECT id, fields, container_ids FROM profile "
                "WHERE application_id = ? AND registration_id = ?",
                (application_id, push.registration_id),
            ).fetchone()
            if row is None:
                cursor = self._db.execute(
                    "INSERT INTO profile (application_id, registration_id, fields, container_ids,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        application_id,
                        push.registration_id,
                        _dumps(push.fields),
                        _dumps([push.container_id]),
                        now,
                        now,
                    ),
                )
                assert cursor.lastrowid is not None
                return UpsertResult(cursor.lastrowid, True, "created")

            profile_id, fields_json, containers_json = row
            if is_admin_locked(push.registration_id):
                return UpsertResult(profile_id, False, "admin lock")
            fields = merge(json.loads(fields_json), push)
            containers: list[int] = json.loads(containers_json)
            if push.container_id not in containers:
                containers.append(push.container_id)
            new_fields_json, new_containers_json = _dumps(fields), _dumps(containers)
            if new_fields_json == fields_json and new_containers_json == containers_json:
                return UpsertResult(profile_id, False, "unchanged")
            self._db.execute(
                "UPDATE profile SET fields = ?, container_ids = ?, updated_at = ? WHERE id = ?",
                (new_fields_json, new_containers_json, now, profile_id),
            )
            return UpsertResult(profile_id, False, "updated")

    def get(self, application_id: int, profile_id: int) -> dict[str, Any] | None:
        """One stored profile of the application, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, fields, container_ids, created_at, updated_at FROM profile "
                "WHERE id = ? AND application_id = ?",
                (profile_id, application_id),
            ).fetchone()
        return None if row is None else _profile(row)

    def page(self, application_id: int, page: int, limit: int) -> list[dict[str, Any]]:
        """One page of the application's profiles in id order; ``page`` counts from 1."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, fields, container_ids, created_at, updated_at FROM profile "
                "WHERE application_id = ? ORDER BY id LIMIT ? OFFSET ?",
                (application_id, limit, (page - 1) * limit),
            ).fetchall()
        return [_profile(row) for row in rows]

    def recent(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The most recently changed profiles of every application, with their application id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, fields, container_ids, created_at, updated_at, application_id "
                "FROM profile ORDER BY updated_at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(row[5], _profile(row[:5])) for row in rows]

    def count_profiles(self) -> int:
        """How many profiles are stored, over every application."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM profile").fetchone()[0])

    def log(
        self,
        when: str,
        method: str,
        path: str,
        status: int | None,
        registration_id: str | None,
        reason: str | None,
    ) -> None:
        """Append one line to the request log."""
        with self._lock:
            self._db.execute(
                "INSERT INTO request_log (time, method, path, status, registration_id, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (when, method, path, status, registration_id, reason),
            )

    def log_lines(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` log lines, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT time, method, path, status, registration_id, reason FROM request_log "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("time", "method", "path", "status", "registration_id", "reason")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def status_counts(self) -> dict[int | None, int]:
        """Logged API requests by status; None counts dropped connections."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, count(*) FROM request_log GROUP BY status"
            ).fetchall()
        return {status: count for status, count in rows}

    def reset(self) -> None:
        """Empty the profiles and the log; profile ids are not reused."""
        with self._lock:
            self._db.execute("DELETE FROM profile")
            # NOTE: ids keep counting after a reset, so a stale id never names a new profile.
            self._db.execute("DELETE FROM request_log")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _profile(row: tuple[Any, ...]) -> dict[str, Any]:
    profile_id, fields_json, containers_json, created_at, updated_at = row
    fields: dict[str, Any] = json.loads(fields_json)
    return {
        "id": profile_id,
        "registration_id": fields.pop("registration_id"),
        "type_id": fields.pop("type_id"),
        "container_ids": json.loads(containers_json),
        "created_at": created_at,
        "updated_at": updated_at,
        **fields,
    }
