"""The sync engine's public face: run a stage whole or in pieces, decide on samples, go live.

Airflow tasks call the pieces (:func:`prepare_run`, :func:`push_chunk`, :func:`finish_run`);
the command line calls :func:`run_stage`. Nothing here imports Airflow.
"""

from __future__ import annotations

from grip.engine.common import integration_fingerprint, load_mappings, open_ledger
from grip.engine.finish import dry_run_report, finish_run
from grip.engine.gate import check_stage, go_live, mappings_fingerprint, record_decision, refusal
from grip.engine.plan import Action, LedgerIndex, PlanCounts
from grip.engine.prepare import RunPlan, prepare_run
from grip.engine.progress import NoProgress, Progress
from grip.engine.push import ChunkResult, push_chunk
from grip.engine.stage import run_stage
from grip.engine.workdir import ChunkFile

__all__ = [
    "Action",
    "ChunkFile",
    "ChunkResult",
    "LedgerIndex",
    "NoProgress",
    "PlanCounts",
    "Progress",
    "RunPlan",
    "check_stage",
    "dry_run_report",
    "finish_run",
    "go_live",
    "integration_fingerprint",
    "load_mappings",
    "mappings_fingerprint",
    "open_ledger",
    "prepare_run",
    "push_chunk",
    "record_decision",
    "refusal",
    "run_stage",
]
