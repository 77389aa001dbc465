"""Processes that open a new SQLite ledger at the same moment all get a migrated ledger."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import sqlalchemy as sa

PROCESSES = 4
ROUNDS = 3


def _open_ledger(url: str, barrier: multiprocessing.synchronize.Barrier, plain: bool) -> None:
    from grip.ledger import Ledger

    # A plain engine, as an Airflow SQLite connection makes one, or the ledger's own URL.
    target = sa.create_engine(url) if plain else url
    barrier.wait(timeout=60)
    Ledger(target).close()


@pytest.mark.parametrize("plain", [True, False], ids=["airflow-engine", "ledger-url"])
def test_ledger_opened_by_several_processes_at_once_is_migrated_once(tmp_path: Path, plain):
    context = multiprocessing.get_context("fork")
    for round_no in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'ledger-{round_no}.sqlite'}"
        barrier = context.Barrier(PROCESSES)
        workers = [
            context.Process(target=_open_ledger, args=(url, barrier, plain))
            for _ in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert [w.exitcode for w in workers] == [0] * PROCESSES, f"round {round_no}"

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM grip_ledger_version").all()
        engine.dispose()
        assert len(versions) == 1
