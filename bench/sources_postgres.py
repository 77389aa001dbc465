"""Rows per second and peak RSS reading a PostgreSQL table into DataFrame chunks, by method.

Loads 1,000,000 rows x 15 columns into a scratch database (generate_series, in SQL), then
reads the table completely with the SQL source, once per run in a fresh subprocess so that each
peak RSS is that read's alone: the server-side cursor (the generic path) and COPY parsed by
Arrow (the PostgreSQL path), each with psycopg2 and psycopg 3, beside ``pandas.read_sql`` over
a server-side cursor for reference. Prints medians with the machine and writes
bench/results/sources_postgres.json.

    .venv/bin/python -m bench.sources_postgres [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sources_postgres.json"
ADMIN_URL = os.environ.get(
    "GRIP_BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
TARGET_ROWS_PER_S = 100_000
TARGET_PEAK_RSS_MB = 1024
CHUNK_SIZE = 50_000

CREATE_TABLE = """
CREATE TABLE visitors AS
SELECT
    g::bigint                                                   AS id,
    'B' || lpad(g::text, 8, '0')                                AS registration_id,
    (ARRAY['Anna', 'Бруно', 'Zoë', 'Kenji', 'Ольга'])[1 + g % 5] AS first_name,
    'Surname' || (g % 997)                                      AS last_name,
    'visitor' || g || '@example.com'                            AS email,
    CASE WHEN g % 11 = 0 THEN NULL ELSE 'Company ' || (g % 5003) END AS company_name,
    CASE WHEN g % 7 = 0 THEN '' ELSE 'Buyer' END                AS job_title,
    (ARRAY['Paris', 'Москва', 'Lisboa', 'Tokyo'])[1 + g % 4]    AS city,
    (ARRAY['fr', 'ru', 'pt', 'jp'])[1 + g % 4]::char(2)          AS country_code,
    '+44 20 7946 ' || lpad((g % 10000)::text, 4, '0')           AS phone,
    (g % 3 = 0)                                                 AS vip,
    round((g % 100000) / 100.0, 2)::numeric(10, 2)              AS fee,
    (g % 1000) / 7.0::float8                                    AS score,
    timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second' AS registered_at,
    date '2025-01-01' + (g % 365)                               AS updated_on
FROM generate_series(1, {rows}) AS g
"""


def _child(url: str, method: str, rows: int) -> dict[str, Any]:
    """Read the table once in this process and report the rate and the peak RSS."""
    import pandas as pd
    import sqlalchemy as sa

    from grip.sources import SqlSourceConfig, build_source

    process = psutil.Process()
    baseline = process.memory_info().rss
    started = time.perf_counter()
    count = 0
    chunks = 0
    if method == "read_sql":
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            streaming = conn.execution_options(stream_results=True)
            for frame in pd.read_sql("SELECT * FROM visitors", streaming, chunksize=CHUNK_SIZE):
                count += len(frame)
                chunks += 1
        engine.dispose()
    else:
        config = SqlSourceConfig(
            kind="sql", url=url, table="visitors", chunk_size=CHUNK_SIZE, method=method
        )
        with build_source(config) as source:
            for frame in source.chunks():
                count += len(frame)
                chunks += 1
            if source.method_used != method:
                raise SystemExit(f"asked for {method}, the source read by {source.method_used}")
    elapsed = time.perf_counter() - started
    if count != rows:
        raise SystemExit(f"read {count} rows, expected {rows}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "rows": count,
        "chunks": chunks,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(count / elapsed),
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
    }


def _load(admin_url: str, name: str, rows: int) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = sa.make_url(admin_url).set(database=name)
    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execution_options(no_parameters=True).exec_driver_sql(
            CREATE_TABLE.format(rows=int(rows))
        )
        conn.exec_driver_sql("ANALYZE visitors")
        size = conn.exec_driver_sql("SELECT pg_total_relation_size('visitors')").scalar()
    engine.dispose()
    print(f"loaded {rows:,} rows ({size / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f} s")
    return url.render_as_string(hide_password=False)


def _drop(admin_url: str, name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
            "AND pid <> pg_backend_pid()"
        )
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.dispose()


def _run_child(url: str, method: str, rows: int) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.sources_postgres",
            "--child",
            method,
            "--url",
            url,
            "--rows",
            str(rows),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        raise SystemExit(f"{method} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.url, args.child, args.rows)))
        return

    from bench._machine import describe, machine_facts

    facts = machine_facts()
    name = f"grip_bench_sources_{os.getpid()}"
    url = _load(ADMIN_URL, name, args.rows)
    psycopg3_url = url.replace("postgresql+psycopg2://", "postgresql+psycopg://", 1)
    cases = [
        ("cursor", "psycopg2", url),
        ("copy", "psycopg2", url),
        ("cursor", "psycopg", psycopg3_url),
        ("copy", "psycopg", psycopg3_url),
        ("read_sql", "psycopg2", url),
    ]
    results: list[dict[str, Any]] = []
    try:
        for method, driver, case_url in cases:
            runs = [_run_child(case_url, method, args.rows) for _ in range(args.runs)]
            median_rate = statistics.median(r["rows_per_s"] for r in runs)
            median_peak = statistics.median(r["peak_rss_mb"] for r in runs)
            results.append(
                {
                    "method": method,
                    "driver": driver,
                    "median_rows_per_s": round(median_rate),
                    "median_peak_rss_mb": median_peak,
                    "meets_goal": median_rate >= TARGET_ROWS_PER_S
                    and median_peak < TARGET_PEAK_RSS_MB,
                    "runs": runs,
                }
            )
            print(
                f"{method:>8} {driver:<8} {median_rate:>10,.0f} rows/s   peak RSS "
                f"{median_peak:>6.0f} MB   (runs: "
                + ", ".join(f"{r['rows_per_s']:,}" for r in runs)
                + ")"
            )
    finally:
        _drop(ADMIN_URL, name)

    print(f"machine: {describe(facts)}")
    print(
        f"goal: at least {TARGET_ROWS_PER_S:,} rows/s with peak RSS under "
        f"{TARGET_PEAK_RSS_MB} MB; {args.rows:,} rows x 15 columns, chunks of {CHUNK_SIZE:,}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "sources_postgres",
                "rows": args.rows,
                "columns": 15,
                "chunk_size": CHUNK_SIZE,
                "runs_per_case": args.runs,
                "goal": {
                    "rows_per_s": TARGET_ROWS_PER_S,
                    "peak_rss_mb_below": TARGET_PEAK_RSS_MB,
                },
                "machine": facts,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
