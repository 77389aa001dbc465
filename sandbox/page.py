"""The sandbox's HTML page: applications, recent registrations and log lines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from sandbox.config import Application, FaultSettings

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2330; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #dde1ea;
         vertical-align: top; }
th { background: #f2f4f8; }
code { font-size: 0.8rem; }
.ok { color: #17703a; } .bad { color: #b3261e; } .muted { color: #6b7285; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="muted">-</td>'
    return f"<td>{escape(str(value))}</td>"


def _status_cell(status: int | None) -> str:
    if status is None:
        return '<td class="bad">dropped</td>'
    css = "ok" if status < 400 else "bad"
    return f'<td class="{css}">{status}</td>'


def _applications(applications: Iterable[Application]) -> str:
    rows = []
    for app in applications:
        types = ", ".join(f"{tid} {name}" for tid, name in sorted(app.types.items()))
        rows.append(
            "<tr>"
            + _cell(app.id)
            + _cell(app.name)
            + _cell(", ".join(app.languages))
            + _cell(types)
            + _cell(", ".join(str(c) for c in app.containers))
            + "</tr>"
        )
    head = (
        "<tr><th>id</th><th>name</th><th>languages</th><th>data types</th><th>containers</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _profiles(
    apps_by_id: dict[int, Application], recent: Sequence[tuple[int, dict[str, Any]]]
) -> str:
    if not recent:
        return '<p class="muted">No registrations yet.</p>'
    rows = []
    for app_id, profile in recent:
        app = apps_by_id.get(app_id)
        type_name = app.types.get(profile["type_id"], "?") if app else "?"
        metadata = profile.get("metadata_raw")
        rows.append(
            "<tr>"
            + _cell(profile["id"])
            + _cell(app_id)
            + _cell(profile["registration_id"])
            + _cell(f"{profile['type_id']} {type_name}")
            + _cell(profile.get("name") or profile.get("company_name"))
            + _cell(", ".join(str(c) for c in profile["container_ids"]))
            + _cell(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(profile["updated_at"])))
            + "<td><code>"
            + escape(json.dumps(metadata, ensure_ascii=False) if metadata else "")
            + "</code></td></tr>"
        )
    head = (
        "<tr><th>id</th><th>application</th><th>registration id</th><th>data type</th>"
        "<th>name</th><th>containers</th><th>updated (UTC)</th><th>metadata_raw</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _log(lines: Sequence[dict[str, Any]]) -> str:
    if not lines:
        return '<p class="muted">No requests yet.</p>'
    rows = [
        "<tr>"
        + _cell(line["time"])
        + _cell(line["method"])
        + _cell(line["path"])
        + _status_cell(line["status"])
        + _cell(line["registration_id"])
        + _cell(line["reason"])
        + "</tr>"
        for line in lines
    ]
    head = (
        "<tr><th>time (UTC)</th><th>method</th><th>path</th><th>status</th>"
        "<th>registration id</th><th>reason</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _faults(settings: FaultSettings) -> str:
    active = {
        key: value
        for key, value in settings.model_dump().items()
        if value != FaultSettings.model_fields[key].default
    }
    if not active:
        return '<p class="muted">No latency or faults switched on.</p>'
    items = "".join(
        f"<li><code>{escape(k)}</code> = {escape(str(v))}</li>" for k, v in active.items()
    )
    return f"<ul>{items}</ul>"


def render_page(
    applications: Sequence[Application],
    recent: Sequence[tuple[int, dict[str, Any]]],
    log_lines: Sequence[dict[str, Any]],
    profile_count: int,
    settings: FaultSettings,
) -> str:
    """Render the Data & Language Management style page.

    Args:
        applications: Served applications.
        recent: Most recently changed profiles with their application id.
        log_lines: Newest log lines first.
        profile_count: Profiles stored over every application.
        settings: Current fault switches.

    Returns:
        A complete HTML document that reloads itself every 5 seconds.
    """
    apps_by_id = {app.id: app for app in applications}
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='5'>"
        "<title>Grip API sandbox - Data &amp; Language Management</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Grip API sandbox - Data &amp; Language Management</h1>"
        "<h2>Applications</h2>"
        + _applications(applications)
        + "<h2>Fault switches</h2>"
        + _faults(settings)
        + f"<h2>Recent registrations ({profile_count} stored)</h2>"
        + _profiles(apps_by_id, recent)
        + "<h2>Request log</h2>"
        + _log(log_lines)
        + "</body></html>"
    )
