"""The approval gate: which stage may run, the mappings' fingerprint, decisions, going live."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from grip.errors import StageRefusedError
from grip.ledger import IntegrationState, Ledger, Stage
from grip.ledger.repository import now

log = logging.getLogger(__name__)

STAGES = ("sample", "full", "sync")
MAY_PUSH_ALL = frozenset({Stage.APPROVED, Stage.LIVE})
MAY_DECIDE = frozenset(
    {
        Stage.SAMPLE_PUSHED,
        Stage.AWAITING_APPROVAL,
        Stage.SAMPLE_REJECTED,
        Stage.APPROVED,
        Stage.LIVE,
    }
)


def mappings_fingerprint(fingerprints: Mapping[str, str]) -> str:
    """One fingerprint for an integration's mappings, from each data type's own fingerprint."""
    text = json.dumps(sorted(fingerprints.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def refusal(name: str, stage: str, state: IntegrationState | None, fingerprint: str) -> str | None:
    """Return why ``stage`` may not run for the integration now, or ``None`` if it may.

    A sample may always run. Full and sync need an approved sample (stage ``approved`` or
    ``live``) whose mappings' fingerprint is the current one.
    """
    if stage == "sample":
        return None
    current = state.stage if state is not None else Stage.NEW
    if current not in MAY_PUSH_ALL:
        return (
            f"integration {name}: the {stage} stage needs an approved sample, and the "
            f"integration is at stage '{current.value}'; run the sample stage and have its "
            f"report approved first (python -m grip approve <integration file>)"
        )
    assert state is not None
    if state.approved_fingerprint != fingerprint:
        approved = (state.approved_fingerprint or "none")[:12]
        return (
            f"integration {name}: the mappings changed since the sample was approved "
            f"(approved fingerprint {approved}, now {fingerprint[:12]}); a new sample approval "
            f"is needed: run the sample stage again and have it approved before the {stage} stage"
        )
    return None


def check_stage(name: str, stage: str, state: IntegrationState | None, fingerprint: str) -> None:
    """Raise StageRefusedError when ``stage`` may not run (see :func:`refusal`)."""
    if stage not in STAGES:
        raise StageRefusedError(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
    reason = refusal(name, stage, state, fingerprint)
    if reason is not None:
        raise StageRefusedError(reason)


def record_decision(
    integration: str,
    approved: bool,
    by: str,
    comment: str | None = None,
    fingerprint: str | None = None,
    *,
    ledger: Ledger,
) -> IntegrationState:
    """Record the project manager's decision on the integration's latest sample.

    Args:
        integration: the integration's name.
        approved: approve (full and sync may run) or reject (they may not).
        by: who decided (user name or e-mail).
        comment: the reviewer's comment.
        fingerprint: the mappings' fingerprint the reviewer saw (the sample run's); when given
            it must be the latest sample's, so that a decision cannot approve a sample it did
            not see. ``None`` takes the latest sample's.
        ledger: the ledger.

    Raises:
        StageRefusedError: no sample was pushed yet, or the fingerprint is not the latest
            sample's.
    """
    state = ledger.integration(integration)
    if state is None or state.stage not in MAY_DECIDE or state.sample_fingerprint is None:
        current = "unknown to the ledger" if state is None else f"at stage '{state.stage.value}'"
        raise StageRefusedError(
            f"integration {integration} is {current}: there is no sample to approve or reject; "
            "run the sample stage first"
        )
    if fingerprint is not None and fingerprint != state.sample_fingerprint:
        raise StageRefusedError(
            f"integration {integration}: the decision is about mappings {fingerprint[:12]}, but "
            f"the latest sample (run {state.sample_run_id}) used {state.sample_fingerprint[:12]}; "
            "review the latest sample report and decide on that one"
        )
    return ledger.record_decision(
        integration,
        approved=approved,
        by=by,
        comment=comment,
        fingerprint=state.sample_fingerprint,
        sample_run_id=state.sample_run_id,
    )


def go_live(integration: str, *, ledger: Ledger) -> IntegrationState:
    """Mark an approved integration as live (recurring syncs run); a live one stays live.

    Raises:
        StageRefusedError: the integration's sample is not approved.
    """
    state = ledger.integration(integration)
    if state is None or state.stage not in MAY_PUSH_ALL:
        current = "unknown to the ledger" if state is None else f"at stage '{state.stage.value}'"
        raise StageRefusedError(
            f"integration {integration} is {current}: only an integration whose sample was "
            "approved can go live"
        )
    if state.stage is not Stage.LIVE:
        ledger.set_stage(integration, Stage.LIVE, live_since=now())
    result = ledger.integration(integration)
    assert result is not None
    return result


def describe_state(state: IntegrationState | None) -> dict[str, Any]:
    """A JSON-ready view of an integration's state for status output."""
    if state is None:
        return {"stage": Stage.NEW.value}
    return {
        "stage": state.stage.value,
        "sample_run_id": state.sample_run_id,
        "approved_fingerprint": state.approved_fingerprint,
        "decided_by": state.decided_by,
        "decided_at": state.decided_at.isoformat() if state.decided_at else None,
        "comment": state.decision_comment,
        "live_since": state.live_since.isoformat() if state.live_since else None,
    }
