"""The approval gate: which stage may run, decisions on samples, going live."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grip.engine.gate import check_stage, go_live, mappings_fingerprint, record_decision
from grip.errors import StageRefusedError
from grip.ledger import Ledger, Stage


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as opened:
        yield opened


def _at(ledger: Ledger, stage: Stage, approved: str | None = None) -> None:
    ledger.set_stage("demo", stage, sample_run_id=1, sample_fingerprint="fp1")
    if approved is not None:
        ledger.set_stage("demo", stage, approved_fingerprint=approved)


def test_fingerprint_depends_on_every_mapping_and_not_on_order() -> None:
    a = mappings_fingerprint({"visitor": "v1", "exhibitor": "e1"})
    assert a == mappings_fingerprint({"exhibitor": "e1", "visitor": "v1"})
    assert a != mappings_fingerprint({"visitor": "v1", "exhibitor": "e2"})
    assert a != mappings_fingerprint({"visitor": "v1"})


@pytest.mark.parametrize(
    ("stage", "at", "approved", "fingerprint", "match"),
    [
        (
            "full",
            None,
            None,
            "fp1",
            r"needs an approved sample, and the integration is at stage 'new'",
        ),
        ("sync", Stage.NEW, None, "fp1", r"at stage 'new'"),
        ("full", Stage.SAMPLE_PUSHED, None, "fp1", r"at stage 'sample_pushed'"),
        ("sync", Stage.AWAITING_APPROVAL, None, "fp1", r"at stage 'awaiting_approval'"),
        ("full", Stage.SAMPLE_REJECTED, None, "fp1", r"at stage 'sample_rejected'"),
        (
            "sync",
            Stage.LIVE,
            "fp1",
            "fp2",
            r"mappings changed since the sample was approved \(approved fingerprint fp1, now fp2\)"
            r"; a new sample approval is needed",
        ),
        ("full", Stage.APPROVED, "fp1", "fp2", r"a new sample approval is needed"),
        ("push", Stage.LIVE, "fp1", "fp1", r"unknown stage 'push'"),
    ],
)
def test_refusals(ledger: Ledger, stage, at, approved, fingerprint, match) -> None:
    if at is not None:
        _at(ledger, at, approved)
    with pytest.raises(StageRefusedError, match=match):
        check_stage("demo", stage, ledger.integration("demo"), fingerprint)


@pytest.mark.parametrize(
    ("stage", "at", "approved"),
    [
        ("sample", None, None),
        ("sample", Stage.LIVE, "fp0"),
        ("full", Stage.APPROVED, "fp1"),
        ("sync", Stage.APPROVED, "fp1"),
        ("sync", Stage.LIVE, "fp1"),
    ],
)
def test_allowed(ledger: Ledger, stage, at, approved) -> None:
    if at is not None:
        _at(ledger, at, approved)
    check_stage("demo", stage, ledger.integration("demo"), "fp1")


def test_decisions_follow_the_latest_sample(ledger: Ledger) -> None:
    with pytest.raises(StageRefusedError, match="unknown to the ledger: there is no sample"):
        record_decision("demo", True, "pm", ledger=ledger)
    ledger.ensure_integration("demo")
    with pytest.raises(StageRefusedError, match="at stage 'new': there is no sample"):
        record_decision("demo", True, "pm", ledger=ledger)
    _at(ledger, Stage.AWAITING_APPROVAL)
    with pytest.raises(StageRefusedError, match=r"about mappings other.*latest sample \(run 1\)"):
        record_decision("demo", True, "pm", fingerprint="other", ledger=ledger)
    state = record_decision("demo", False, "pm", "wrong titles", ledger=ledger)
    assert (state.stage, state.approved_fingerprint) == (Stage.SAMPLE_REJECTED, None)
    with pytest.raises(StageRefusedError, match="only an integration whose sample was approved"):
        go_live("demo", ledger=ledger)
    state = record_decision("demo", True, "pm", "ok", fingerprint="fp1", ledger=ledger)
    assert (state.stage, state.approved_fingerprint, state.decision_comment) == (
        Stage.APPROVED,
        "fp1",
        "ok",
    )
    live = go_live("demo", ledger=ledger)
    assert live.stage is Stage.LIVE
    assert live.live_since is not None
    assert go_live("demo", ledger=ledger).live_since == live.live_since
