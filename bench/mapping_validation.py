"""Benchmark: map and validate generated visitor registrations with the demo Visitor mapping.

    python -m bench.mapping_validation                      # 1,000,000 rows, 50,000 a chunk
    python -m bench.mapping_validation --rows 200000 --chunk-size 100000 --repeat 5

The rows come from bench.datagen (Latin and Cyrillic names, multi-value categories, about 1%
bad rows) and are generated before the clock starts; the source read is not measured here.
Each repeat maps and validates every chunk with a fresh Mapper and Validator (one shared GX
context, created and warmed before timing, as a worker keeps it between chunks). The target
is 100,000 rows/s or more for map and validate together. Figures go to
bench/results/mapping_validation.json together with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._machine import describe, machine_facts
from bench.datagen import visitors
from grip.config import load_integration
from grip.mapping import Mapper, load_mapping
from grip.validation import Validator, reason_counts
from grip.validation.gx import gx_context

ROOT = Path(__file__).resolve().parents[1]
INTEGRATION = ROOT / "include" / "integrations" / "demo.yaml"
RESULTS = ROOT / "bench" / "results" / "mapping_validation.json"
TARGET_ROWS_PER_SECOND = 100_000
DEFAULT_CHUNK_SIZE = 50_000  # grip.sources.config: chunk_size of SQL and file sources


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def run_once(frame: Any, spec: Any, application: Any, chunk_size: int) -> dict[str, Any]:
    """Map and validate ``frame`` chunk by chunk; return the times and counts of one pass."""
    mapper = Mapper(spec)
    validator = Validator(spec, application, context=gx_context())
    wall = {"map": 0.0, "validate": 0.0}
    cpu = {"map": 0.0, "validate": 0.0}
    rejects: Counter[str] = Counter()
    filtered: Counter[str] = Counter()
    valid = rejected = payload_bytes = 0
    for start in range(0, len(frame), chunk_size):
        chunk = frame.iloc[start : start + chunk_size]
        w0, c0 = _clock()
        mapped = mapper.map(chunk)
        w1, c1 = _clock()
        checked = validator.validate(mapped)
        w2, c2 = _clock()
        wall["map"] += w1 - w0
        wall["validate"] += w2 - w1
        cpu["map"] += c1 - c0
        cpu["validate"] += c2 - c1
        filtered.update(mapped.filtered)
        rejects.update(reason_counts(checked.rejects))
        valid += len(checked.valid)
        rejected += len(checked.rejects)
        payload_bytes += int(checked.valid.rows["payload_json"].str.len().sum())
    total_wall = wall["map"] + wall["validate"]
    return {
        "rows": len(frame),
        "wall_s": {k: round(v, 3) for k, v in wall.items()} | {"total": round(total_wall, 3)},
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()}
        | {"total": round(cpu["map"] + cpu["validate"], 3)},
        "rows_per_s": round(len(frame) / total_wall),
        "rows_per_cpu_s": round(len(frame) / (cpu["map"] + cpu["validate"])),
        "valid": valid,
        "rejected": rejected,
        "filtered": dict(filtered),
        "rejects_by_rule": dict(rejects.most_common()),
        "payload_chars_avg": round(payload_bytes / max(valid, 1)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    facts = machine_facts()
    print(f"machine: {describe(facts)}")
    started = time.perf_counter()
    frame = visitors(args.rows, bad_share=args.bad_share)
    print(f"generated {len(frame):,} visitor rows in {time.perf_counter() - started:.1f} s")

    integration = load_integration(INTEGRATION)
    application = integration.spec.application
    spec = load_mapping(integration.mapping_path("visitor"), application, frame.columns)
    started = time.perf_counter()
    warm = Validator(spec, application, context=gx_context())
    warm.validate(Mapper(spec).map(frame.iloc[:1000]))
    warm_up = time.perf_counter() - started
    print(f"GX import, context and first validation (not timed below): {warm_up:.1f} s")

    load_before = os.getloadavg()
    runs = []
    for number in range(1, args.repeat + 1):
        result = run_once(frame, spec, application, args.chunk_size)
        runs.append(result)
        print(
            f"run {number}: {result['rows_per_s']:,} rows/s "
            f"(map {result['wall_s']['map']:.2f} s, validate {result['wall_s']['validate']:.2f} s;"
            f" cpu {result['cpu_s']['total']:.2f} s), {result['rejected']:,} rejected"
        )
    load_after = os.getloadavg()

    median = statistics.median(run["rows_per_s"] for run in runs)
    best = max(runs, key=lambda run: run["rows_per_s"])
    summary = {
        "benchmark": "mapping_validation",
        "description": "demo Visitor mapping: map + validate (GX) generated rows, in chunks",
        "machine": facts,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "rows": args.rows,
        "chunk_size": args.chunk_size,
        "bad_share": args.bad_share,
        "repeat": args.repeat,
        "warm_up_s": round(warm_up, 2),
        "target_rows_per_s": TARGET_ROWS_PER_SECOND,
        "median_rows_per_s": round(median),
        "best_rows_per_s": best["rows_per_s"],
        "median_rows_per_cpu_s": round(statistics.median(r["rows_per_cpu_s"] for r in runs)),
        "meets_target": median >= TARGET_ROWS_PER_SECOND,
        "runs": runs,
    }
    print(
        f"median {median:,.0f} rows/s (best {best['rows_per_s']:,}), target "
        f"{TARGET_ROWS_PER_SECOND:,}: {'met' if summary['meets_target'] else 'NOT met'}; "
        f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {facts['cores']} cores"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if args.out.exists():
        try:
            existing = json.loads(args.out.read_text(encoding="utf-8"))
        except ValueError:
            existing = {}
    by_chunk = existing.get("by_chunk_size", {}) if isinstance(existing, dict) else {}
    by_chunk[str(args.chunk_size)] = summary
    # the headline is the run at the sources' default chunk size, when there is one
    output = by_chunk.get(str(DEFAULT_CHUNK_SIZE), summary) | {"by_chunk_size": by_chunk}
    args.out.write_text(json.dumps(output, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
