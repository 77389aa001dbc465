"""Push throughput of the Grip client against the sandbox, as a share of what is possible here.

Measured in one run, on one machine, client and sandbox sharing its cores:

- ceiling: the client pushing with no latency and no limit (what the machine allows);
- raw: plain ``http.client`` connections with the same threads against the same sandbox, no
  library and no bookkeeping; the client's share of it is the client's own overhead;
- latency: 20 ms answers at concurrency 1, 4, 16 and 32, each as a share of the ideal
  ``concurrency / latency``, next to the raw loop's share at the same concurrency (what the
  sandbox and the machine leave possible), and as a share of ``min(ideal, ceiling)``;
- adaptive: a sandbox limited to R requests per second and a client not told R; the achieved
  rate over R, and the share of requests answered 429.

Every figure is the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench._machine import describe, machine_facts
from grip.api import ClientSettings, GripClient
from tests.harness.sandbox import SandboxServer

RESULTS = Path(__file__).resolve().parent / "results" / "client_push.json"


class Bench:
    def __init__(self, server: SandboxServer, seconds: float):
        self.server = server
        self.seconds = seconds
        self._offset = 0

    def payloads(self, count: int) -> list[dict[str, Any]]:
        start, self._offset = self._offset, self._offset + count
        return [
            {
                "type_id": 380,
                "default_container_id": 90001,
                "registration_id": f"P{n:08d}",
                "first_name": "Anna",
                "last_name": "Petrova",
                "email": f"p{n}@example.com",
                "metadata_raw": {"interest": [{"en-gb": "Leisure", "ru-ru": "Отдых"}]},
            }
            for n in range(start, start + count)
        ]

    def client_rate(self, count: int, **settings: Any) -> tuple[float, dict[str, Any]]:
        values = {"base_url": self.server.base_url, "token": self.server.token} | settings
        payloads = self.payloads(count)
        with GripClient(ClientSettings(**values)) as client:
            started = time.monotonic()
            stamps = [time.monotonic() for o in client.push(payloads) if o.accepted]
            elapsed = time.monotonic() - started
            stats = client.stats.as_dict() | {"final_rate": client.rate}
        # the second half of the run: the rate a long push settles at
        half = stamps[len(stamps) // 2 :]
        stats["second_half_rps"] = (len(half) - 1) / (half[-1] - half[0]) if len(half) > 2 else 0
        return len(stamps) / elapsed, stats

    def raw_rate(self, count: int, threads: int) -> float:
        """The same pushes from plain ``http.client`` connections: no library, no bookkeeping."""
        bodies = [json.dumps(p).encode() for p in self.payloads(count)]
        url = urlsplit(f"{self.server.base_url}/thing/register")
        headers = {
            "Authorization": f"Bearer {self.server.token}",
            "Content-Type": "application/json",
        }
        lock = threading.Lock()

        def work() -> None:
            connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
            while True:
                with lock:
                    if not bodies:
                        return
                    body = bodies.pop()
                connection.request("POST", url.path, body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"the sandbox answered {answer.status}")

        workers = [threading.Thread(target=work) for _ in range(threads)]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return count / (time.monotonic() - started)


def median_of(runs: int, measure) -> tuple[float, list[Any]]:
    results = [measure() for _ in range(runs)]
    values = [r[0] if isinstance(r, tuple) else r for r in results]
    return statistics.median(values), results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one measurement")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--limit", type=float, default=200.0, help="R for the adaptive run")
    parser.add_argument("--adaptive-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    facts = machine_facts()
    print(f"machine: {describe(facts)}")
    result: dict[str, Any] = {"machine": facts, "runs": args.runs}
    with SandboxServer() as server:
        bench = Bench(server, args.seconds)
        threads = 16

        server.reset()
        ceiling, raw = median_of(
            args.runs, lambda: bench.client_rate(3000, concurrency=threads, adaptive=False)
        )
        raw, _ = median_of(args.runs, lambda: bench.raw_rate(3000, threads))
        result["ceiling_rps"] = round(ceiling, 1)
        result["raw_http_rps"] = round(raw, 1)
        result["client_share_of_raw"] = round(ceiling / raw, 3)
        print(f"ceiling (client, no latency, {threads} threads): {ceiling:.0f} req/s")
        print(
            f"plain http.client loop, same threads: {raw:.0f} req/s; "
            f"client reaches {100 * ceiling / raw:.0f}% of it"
        )

        latency = args.latency_ms / 1000
        server.configure(latency_ms=args.latency_ms)
        rows = []
        for concurrency in (1, 4, 16, 32):
            ideal = concurrency / latency
            expected = min(ideal, ceiling)
            count = max(50, int(expected * args.seconds))
            rate, _ = median_of(
                args.runs,
                lambda c=concurrency, n=count: bench.client_rate(n, concurrency=c, adaptive=False),
            )
            plain, _ = median_of(
                args.runs, lambda c=concurrency, n=count: bench.raw_rate(n, threads=c)
            )
            row = {
                "concurrency": concurrency,
                "rps": round(rate, 1),
                "ideal_rps": round(ideal, 1),
                "share_of_ideal": round(rate / ideal, 3),
                "raw_http_rps": round(plain, 1),
                "raw_share_of_ideal": round(plain / ideal, 3),
                "share_of_possible": round(rate / expected, 3),
            }
            rows.append(row)
            print(
                f"latency {args.latency_ms:.0f} ms, concurrency {concurrency:2}: {rate:6.0f} "
                f"req/s = {100 * rate / ideal:5.1f}% of ideal {ideal:.0f} "
                f"(plain http.client: {100 * plain / ideal:5.1f}%), "
                f"{100 * rate / expected:5.1f}% of min(ideal, ceiling)"
            )
        result["latency_ms"] = args.latency_ms
        result["latency"] = rows

        adaptive_runs = []
        for _ in range(args.runs):
            server.reset()
            server.configure(
                latency_ms=args.latency_ms,
                rate_limit_rps=args.limit,
                rate_limit_burst=10,
                retry_after="none",
            )
            count = int(args.limit * args.adaptive_seconds)
            rate, stats = bench.client_rate(
                count,
                concurrency=16,
                adaptive=True,
                max_attempts=30,
                backoff_base=0.05,
                progress_interval=3600,
            )
            share_429 = stats["throttled"] / stats["requests"]
            adaptive_runs.append(
                {
                    "rps": rate,
                    "share_of_limit": rate / args.limit,
                    "settled_share_of_limit": stats["second_half_rps"] / args.limit,
                    "share_429": share_429,
                    "learnt_rate": stats["final_rate"],
                }
            )
        achieved = statistics.median(r["share_of_limit"] for r in adaptive_runs)
        settled = statistics.median(r["settled_share_of_limit"] for r in adaptive_runs)
        throttled = statistics.median(r["share_429"] for r in adaptive_runs)
        result["adaptive"] = {
            "limit_rps": args.limit,
            "seconds": args.adaptive_seconds,
            "share_of_limit": round(achieved, 3),
            "settled_share_of_limit": round(settled, 3),
            "share_429": round(throttled, 4),
            "runs": adaptive_runs,
        }
        print(
            f"adaptive, server limit {args.limit:.0f}/s not told to the client: "
            f"{100 * achieved:.1f}% of the limit over the whole run (discovery included), "
            f"{100 * settled:.1f}% over its second half; {100 * throttled:.2f}% answered 429"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
