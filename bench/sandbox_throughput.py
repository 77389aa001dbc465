"""Throughput of the Grip API sandbox with no latency or faults, from several kinds of client."""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests

from bench._machine import describe, machine_facts
from tests.harness.sandbox import SandboxServer

RESULTS = Path(__file__).resolve().parent / "results" / "sandbox_throughput.json"
TARGET_RPS = 1000.0


def payload(n: int) -> dict[str, Any]:
    """A record shaped like Grip's multi-language example; ``n`` picks its registration id."""
    return {
        "type_id": 380 + n % 3,
        "default_container_id": 90001,
        "generate_relationships": 1,
        "new_event_join_type": "join_and_patch",
        "registration_id": f"B{n:07d}",
        "name": f"Visitor {n}",
        "first_name": "Visitor",
        "last_name": str(n),
        "email": f"visitor{n}@example.com",
        "job_title": "Buyer",
        "company_name": "Example Ltd",
        "headline": "Buyer - Example Ltd",
        "location": "City, Country",
        "metadata_raw": {
            "exhibitor_id": [{"en-gb": str(n)}],
            "product_category_provided": [
                {"en-gb": "Tour Operator", "ru-ru": "Туроператор"},
                {"en-gb": "Leisure", "ru-ru": "Многопрофильный"},
            ],
        },
    }


def _bodies(count: int, offset: int) -> list[bytes]:
    # Half of the ids repeat, so the run mixes creates and join-and-patch updates.
    return [json.dumps(payload(offset + i % max(count // 2, 1))).encode() for i in range(count)]


def _requests_worker(
    url: str, token: str, bodies: list[bytes], stop_at: float, counts: list[int]
) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    done = 0
    while time.perf_counter() < stop_at:
        response = session.post(url, data=bodies[done % len(bodies)], headers=headers, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"the sandbox answered {response.status_code}: {response.text}")
        done += 1
    session.close()
    counts.append(done)


def _raw_loop(host: str, port: int, token: str, bodies: list[bytes], stop_at: float) -> int:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    done = 0
    while time.perf_counter() < stop_at:
        connection.request(
            "POST", "/1/thing/register", body=bodies[done % len(bodies)], headers=headers
        )
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the sandbox answered {response.status}")
        done += 1
    connection.close()
    return done


def _raw_process(args: tuple[str, int, str, int, int, float, float, Any]) -> None:
    host, port, token, offset, threads, start_at, duration, queue = args
    bodies = _bodies(2000, offset)
    counts: list[int] = []
    # NOTE: perf_counter is the system-wide monotonic clock on Linux, so every client process
    # starts and stops at the same instant as its siblings, after all of them have started.
    time.sleep(max(0.0, start_at - time.perf_counter()))

    def run() -> None:
        counts.append(_raw_loop(host, port, token, bodies, start_at + duration))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(sum(counts))


class Runner:
    """Runs each kind of client against one sandbox and measures requests per second."""

    def __init__(self, server: SandboxServer, duration: float):
        self.server = server
        self.duration = duration
        self.process = psutil.Process(server.process.pid)
        self.offset = 0

    def _next_offset(self) -> int:
        self.offset += 1_000_000
        return self.offset

    def measure(self, name: str, run: Callable[[], tuple[int, float]]) -> dict[str, Any]:
        """Run ``run`` (it returns its request count and seconds) and the server's CPU time."""
        self.server.reset(settings=True)
        cpu_before = sum(self.process.cpu_times()[:2])
        done, elapsed = run()
        cpu = sum(self.process.cpu_times()[:2]) - cpu_before
        stats = self.server.stats()
        if stats["by_status"].get("200", 0) != done:
            raise RuntimeError(f"{name}: the client counted {done} answers, the sandbox {stats}")
        return {
            "requests": done,
            "seconds": round(elapsed, 3),
            "rps": round(done / elapsed, 1),
            "server_cpu_ms_per_request": round(cpu * 1000 / done, 4) if done else None,
        }

    def requests_threads(self, threads: int) -> tuple[int, float]:
        """``threads`` threads, each with its own ``requests.Session``."""
        url = self.server.base_url + "/thing/register"
        bodies = _bodies(2000, self._next_offset())
        counts: list[int] = []
        started = time.perf_counter()
        stop_at = started + self.duration
        workers = [
            threading.Thread(
                target=_requests_worker, args=(url, self.server.token, bodies, stop_at, counts)
            )
            for _ in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if len(counts) != threads:
            raise RuntimeError("a client thread failed; see its traceback above")
        return sum(counts), time.perf_counter() - started

    def raw_loop(self) -> tuple[int, float]:
        """One thread, one keep-alive ``http.client`` connection, one request after another."""
        bodies = _bodies(2000, self._next_offset())
        started = time.perf_counter()
        done = _raw_loop(
            "127.0.0.1", self.server.port, self.server.token, bodies, started + self.duration
        )
        return done, time.perf_counter() - started

    def raw_processes(self, processes: int, threads: int) -> tuple[int, float]:
        """``processes`` client processes of ``threads`` raw ``http.client`` loops each.

        The processes start first and send together for the run's duration, so their start-up
        is not timed.
        """
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        start_at = time.perf_counter() + 5.0
        jobs = [
            (
                "127.0.0.1",
                self.server.port,
                self.server.token,
                self._next_offset(),
                threads,
                start_at,
                self.duration,
                queue,
            )
            for _ in range(processes)
        ]
        workers = [context.Process(target=_raw_process, args=(job,)) for job in jobs]
        for worker in workers:
            worker.start()
        total = sum(queue.get(timeout=self.duration + 60) for _ in workers)
        for worker in workers:
            worker.join(timeout=30)
        # Each client stops at its first answer after start_at + duration.
        return total, self.duration


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the figures with the machine, write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per client kind")
    parser.add_argument("--threads", type=int, default=8, help="threads of requests sessions")
    parser.add_argument("--db", default=":memory:", help="sandbox database (file or :memory:)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON result file")
    args = parser.parse_args(argv)

    facts = machine_facts()
    print(f"machine: {describe(facts)}")
    kinds: dict[str, list[dict[str, Any]]] = {}
    with SandboxServer(db=args.db) as server:
        runner = Runner(server, args.duration)
        plans: list[tuple[str, Callable[[], int]]] = [
            (
                f"requests_sessions_{args.threads}_threads",
                lambda: runner.requests_threads(args.threads),
            ),
            ("http_client_loop_1_thread", runner.raw_loop),
            ("http_client_2_processes_x_4_threads", lambda: runner.raw_processes(2, 4)),
        ]
        for _ in range(args.repeats):
            for name, run in plans:
                result = runner.measure(name, run)
                kinds.setdefault(name, []).append(result)
                print(
                    f"  {name}: {result['rps']:.0f} req/s ({result['requests']} in "
                    f"{result['seconds']:.1f} s), server CPU {result['server_cpu_ms_per_request']}"
                    " ms/request"
                )

    summary = {}
    for name, runs in kinds.items():
        cpu = statistics.median(r["server_cpu_ms_per_request"] for r in runs)
        summary[name] = {
            "median_rps": round(statistics.median(r["rps"] for r in runs), 1),
            "median_server_cpu_ms_per_request": round(cpu, 4),
            # What one server core could answer if the clients cost nothing.
            "server_core_ceiling_rps": round(1000 / cpu, 1) if cpu else None,
            "runs": runs,
        }
    best = max(entry["median_rps"] for entry in summary.values())
    result = {
        "benchmark": "sandbox_throughput",
        "description": "POST /1/thing/register with no latency or faults, half creates, half "
        "join-and-patch updates; sandbox in a subprocess on the same machine",
        "machine": facts,
        "settings": {
            "duration_s": args.duration,
            "repeats": args.repeats,
            "threads": args.threads,
            "db": args.db,
        },
        "target_rps": TARGET_RPS,
        "best_median_rps": best,
        "meets_target": best >= TARGET_RPS,
        "kinds": summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print("medians:")
    for name, entry in summary.items():
        print(
            f"  {name}: {entry['median_rps']:.0f} req/s; server "
            f"{entry['median_server_cpu_ms_per_request']} ms CPU/request "
            f"(one core: {entry['server_core_ceiling_rps']} req/s)"
        )
    verdict = "meets" if best >= TARGET_RPS else "misses"
    print(f"best median {best:.0f} req/s {verdict} the target of {TARGET_RPS:.0f} req/s")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
