"""A sync with no change over 1,000,000 records: time against the read alone, and peak RSS.

Loads the demo event's visitors (bench.datagen, 1% bad rows) into a scratch PostgreSQL
database, seeds a scratch PostgreSQL ledger as if a full import had pushed every valid record,
then measures, each in a fresh subprocess so that each peak RSS is its own:

- ``read``: the SQL source reads the whole table (the floor any sync pays);
- ``sync``: ``run_stage(..., "sync")`` reads, maps, validates, plans against the ledger and
  finishes the run (marks every record seen, writes the report); it must send nothing.

The goal: the sync's read-to-plan time at most twice the read alone, peak RSS under 1.5 GB.
Prints medians with the machine and writes bench/results/sync_nochange.json.

    .venv/bin/python -m bench.sync_nochange [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sync_nochange.json"
ADMIN_URL = os.environ.get(
    "GRIP_BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
GOAL_RATIO = 2.0
GOAL_PEAK_RSS_MB = 1536
SOURCE_DB = "grip_bench_sync_source"
LEDGER_DB = "grip_bench_sync_ledger"
CHUNK_SIZE = 50_000


def _integration_file(folder: Path, source_url: str, ledger_url: str) -> Path:
    mappings = ROOT / "include" / "mappings" / "demo"
    path = folder / "bench.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: bench_sync
            application:
              languages: [en-gb, ru-ru]
              location_code: en-gb
              type_ids: {{visitor: 380}}
              container_ids: [90001]
            data_types:
              visitor:
                mapping: {mappings / "visitor.yaml"}
                source:
                  kind: sql
                  url: "{source_url}"
                  table: visitors
                  chunk_size: {CHUNK_SIZE}
            ledger_url: "{ledger_url}"
            limits: {{max_reject_share: 0.05}}
            """
        ),
        encoding="utf-8",
    )
    return path


def _database(name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
            "AND pid <> pg_backend_pid()"
        )
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
            "AND pid <> pg_backend_pid()"
        )
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.dispose()


def _copy_frame(url: str, table: str, frame: Any, create: str | None = None) -> None:
    """Bulk-load a frame with COPY (the fastest way into PostgreSQL), then vacuum the table."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with engine.begin() as conn:
        if create:
            conn.exec_driver_sql(create)
        cursor = conn.connection.dbapi_connection.cursor()
        columns = ", ".join(frame.columns)
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
        cursor.close()
    # NOTE: settled as a database is between two syncs: hint bits set, visibility map
    # complete, statistics current; otherwise autovacuum starts on the fresh rows during the
    # first measured runs and takes one of the two cores
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM (FREEZE, ANALYZE) {table}")
    engine.dispose()


def _load_source(rows: int) -> str:
    from bench.datagen import visitors

    url = _database(SOURCE_DB)
    started = time.perf_counter()
    frame = visitors(rows)
    columns = ", ".join(f"{name} text" for name in frame.columns)
    _copy_frame(url, "visitors", frame, create=f"CREATE TABLE visitors ({columns})")
    print(f"source: {rows:,} visitor rows loaded in {time.perf_counter() - started:.1f} s")
    return url


def _seed_ledger(integration_path: Path, ledger_url: str) -> dict[str, int]:
    """Write the ledger a full import would have left: every valid record accepted.

    The records get what a full run's pushes write (the payload's hash and the source row's
    hash, computed by the engine's own functions); no payload is stored, as no read needs one.
    Rows set aside for reasons not tied to a record (no id, a repeated id, left out by a
    filter) become row fates, as a full run leaves them.
    """
    import numpy as np
    import pandas as pd

    from grip.config import load_integration
    from grip.engine.plan import hash_payloads
    from grip.engine.rowhash import row_hashes, source_seed
    from grip.ledger import Ledger, Stage
    from grip.mapping import Mapper
    from grip.sources import build_source
    from grip.sync import integration_fingerprint, load_mappings
    from grip.validation import KeySet, Validator

    started = time.perf_counter()
    integration = load_integration(integration_path)
    spec = load_mappings(integration)["visitor"]
    mapper = Mapper(spec)
    validator = Validator(spec, integration.spec.application, keys=KeySet())
    seed = source_seed(spec, integration.spec.application)
    columns = sorted(spec.required_columns)
    parts = []
    invalid = []
    fates = []
    read = 0
    with build_source(
        integration.spec.data_types["visitor"].source, required_columns=spec.required_columns
    ) as source:
        for frame in source.chunks():
            read += len(frame)
            by_row = pd.Series(row_hashes(frame, columns, seed), index=frame.index)
            mapped = mapper.map(frame)
            validated = validator.validate(mapped)
            valid = validated.valid.rows
            for name, rows in mapped.filtered_rows.items():
                fates.append(
                    pd.DataFrame(
                        {
                            "source_hash": by_row.reindex(rows).to_numpy(),
                            "registration_id": None,
                            "reasons": name,
                            "outcome": "filtered",
                        }
                    )
                )
            own = [
                bool(r.registration_id) and not any(x.startswith("unique_key:") for x in r.reasons)
                for r in validated.rejects
            ]
            bad = [r for r, mine in zip(validated.rejects, own, strict=True) if mine]
            other = [r for r, mine in zip(validated.rejects, own, strict=True) if not mine]
            fates.append(
                pd.DataFrame(
                    {
                        "source_hash": by_row.reindex([r.source_row for r in other]).to_numpy(),
                        "registration_id": [r.registration_id for r in other],
                        "reasons": ["; ".join(r.reasons) for r in other],
                        "outcome": "invalid",
                    }
                )
            )
            invalid.append(
                pd.DataFrame(
                    {
                        "registration_id": [r.registration_id for r in bad],
                        "last_reason": ["; ".join(r.reasons) for r in bad],
                        "source_hash": by_row.reindex([r.source_row for r in bad]).to_numpy(),
                    }
                )
            )
            parts.append(
                pd.DataFrame(
                    {
                        "registration_id": valid["registration_id"].astype(object).to_numpy(),
                        "accepted_hash": hash_payloads(valid["payload_json"].astype(object)),
                        "source_hash": by_row.reindex(valid.index).to_numpy(),
                    }
                )
            )
    records = pd.concat(parts, ignore_index=True)
    records["integration"] = "bench_sync"
    records["data_type"] = "visitor"
    records["sent_hash"] = records["accepted_hash"]
    records["last_outcome"] = "created"
    records["attempts"] = 1
    records["grip_id"] = np.arange(1, len(records) + 1)
    records["last_run_id"] = 1
    records["last_seen_run_id"] = 1
    with Ledger(ledger_url) as ledger:
        fingerprint = integration_fingerprint(integration)
        ledger.set_stage(
            "bench_sync",
            Stage.LIVE,
            approved_fingerprint=fingerprint,
            sample_fingerprint=fingerprint,
        )
    rejected = pd.concat(invalid, ignore_index=True)
    rejected["integration"] = "bench_sync"
    rejected["data_type"] = "visitor"
    rejected["last_outcome"] = "invalid"
    rejected["attempts"] = 0
    rejected["last_run_id"] = 1
    rejected["last_seen_run_id"] = 1
    elsewhere = pd.concat(fates, ignore_index=True).drop_duplicates("source_hash")
    elsewhere["integration"] = "bench_sync"
    elsewhere["data_type"] = "visitor"
    elsewhere["run_id"] = 1
    _copy_frame(ledger_url, "grip_records", records)
    _copy_frame(ledger_url, "grip_records", rejected)
    _copy_frame(ledger_url, "grip_row_fates", elsewhere)
    print(
        f"ledger: {len(records):,} accepted and {len(rejected):,} invalid records, "
        f"{len(elsewhere):,} rows set aside otherwise, of {read:,} rows; seeded in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return {"rows": read, "valid": len(records), "invalid": len(rejected)}


def _child(case: str, integration_path: str, work: str) -> dict[str, Any]:
    """Run one case in this process; report its time and peak RSS."""
    from grip.config import load_integration

    integration = load_integration(integration_path)
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if case == "read":
        from grip.engine.bulk import bulk_work
        from grip.sources import build_source
        from grip.sync import load_mappings

        spec = load_mappings(integration)["visitor"]
        count = 0
        started = time.perf_counter()
        # NOTE: under the process settings the sync's read and plan run under, for a fair floor
        with (
            bulk_work(),
            build_source(
                integration.spec.data_types["visitor"].source,
                required_columns=spec.required_columns,
            ) as source,
        ):
            for frame in source.chunks():
                count += len(frame)
        out["rows"] = count
        out["seconds"] = round(time.perf_counter() - started, 3)
    else:
        from grip.sync import run_stage

        report = run_stage(
            integration,
            "sync",
            client=None,
            work_root=Path(work) / "work",
            report_root=Path(work) / "reports",
        )
        if report.counts["to_push"] or report.pushed:
            raise SystemExit(f"the sync planned to push {report.counts['to_push']} records")
        from grip.sync import open_ledger

        with open_ledger(integration) as ledger:
            details = ledger.run(report.run_id or 0).details
        out["rows"] = report.counts["read"]
        out["seconds"] = round(time.perf_counter() - started, 3)
        # reading and planning overlap (the next chunk is read while one is planned): the wall
        # time of the whole prepare is the figure, the steps' own times are shown beside it
        out["read_to_plan_seconds"] = details["prepare_seconds"]
        out["skipped_unchanged"] = report.counts["skipped_unchanged"]
        out["timings"] = report.timings
        out["counts"] = {k: report.counts[k] for k in ("read", "invalid", "planned_unchanged")}
        out["status"] = report.status
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _peak_rss_mb() -> float:
    """This process's peak RSS. ``ru_maxrss`` would count the parent's (it survives exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _run_child(case: str, integration_path: Path, work: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.sync_nochange",
            "--child",
            case,
            str(integration_path),
            str(work),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{case} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0

    from bench._machine import describe, machine_facts

    facts = machine_facts()
    print(f"machine: {describe(facts)}")
    source_url = _load_source(args.rows)
    ledger_url = _database(LEDGER_DB)
    try:
        with tempfile.TemporaryDirectory(prefix="grip-bench-sync-") as tmp:
            folder = Path(tmp)
            integration_path = _integration_file(folder, source_url, ledger_url)
            seeded = _seed_ledger(integration_path, ledger_url)
            reads, syncs = [], []
            for run in range(args.runs):
                reads.append(_run_child("read", integration_path, folder))
                syncs.append(_run_child("sync", integration_path, folder))
                print(
                    f"run {run + 1}: read {reads[-1]['seconds']:.1f} s "
                    f"({reads[-1]['peak_rss_mb']:.0f} MB); sync read-to-plan "
                    f"{syncs[-1]['read_to_plan_seconds']:.1f} s, whole run "
                    f"{syncs[-1]['seconds']:.1f} s ({syncs[-1]['peak_rss_mb']:.0f} MB); "
                    f"steps {syncs[-1]['timings']}"
                )
    finally:
        if not args.keep:
            _drop(SOURCE_DB)
            _drop(LEDGER_DB)

    read_s = statistics.median(r["seconds"] for r in reads)
    plan_s = statistics.median(s["read_to_plan_seconds"] for s in syncs)
    whole_s = statistics.median(s["seconds"] for s in syncs)
    peak = max(s["peak_rss_mb"] for s in syncs)
    ratio = plan_s / read_s
    result = {
        "benchmark": "sync_nochange",
        "rows": args.rows,
        "valid_records_in_ledger": seeded["valid"],
        "invalid_records_in_ledger": seeded["invalid"],
        "runs": args.runs,
        "goal": {
            "read_to_plan_over_read_at_most": GOAL_RATIO,
            "peak_rss_mb_below": GOAL_PEAK_RSS_MB,
        },
        "machine": facts,
        "median_read_seconds": read_s,
        "median_sync_read_to_plan_seconds": plan_s,
        "median_sync_whole_run_seconds": whole_s,
        "ratio_read_to_plan_over_read": round(ratio, 2),
        "ratio_whole_run_over_read": round(whole_s / read_s, 2),
        "sync_peak_rss_mb": peak,
        "meets_goal": ratio <= GOAL_RATIO and peak < GOAL_PEAK_RSS_MB,
        "read_runs": reads,
        "sync_runs": syncs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"\n{args.rows:,} rows, median of {args.runs}: read alone {read_s:.1f} s; sync read to "
        f"plan {plan_s:.1f} s ({ratio:.2f}x the read, goal at most {GOAL_RATIO:g}x), whole "
        f"sync {whole_s:.1f} s ({whole_s / read_s:.2f}x); peak RSS {peak:.0f} MB (goal under "
        f"{GOAL_PEAK_RSS_MB} MB); {'meets' if result['meets_goal'] else 'MISSES'} the goal"
    )
    print(f"results written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
