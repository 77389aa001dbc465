"""The main job on embedded defaults: a local Grip sandbox and a first push of demo records.

Started by ``make run``. Everything it starts is stopped on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from grip.api import ClientSettings, GripClient

ROOT = Path(__file__).resolve().parent.parent
DEMO_TOKEN = "sandbox-demo-token"

log = logging.getLogger("grip.run")


def start_sandbox(port: int, db: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--db", str(db)],
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the sandbox exited with code {process.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the sandbox did not answer on port {port} within 30 s")


def demo_payloads() -> list[dict]:
    people = [
        ("V-1001", 380, "Claudio", "Cadeddu", "Founder", "Example.com Ltd", "Leisure", "Отдых"),
        (
            "V-1002",
            380,
            "Anna",
            "Smirnova",
            "Buyer",
            "Volga Tours",
            "Luxury travel",
            "Эксклюзивный туризм",
        ),
        ("E-2001", 381, "Nordic", "Trails", "", "Nordic Trails AB", "Tour Operator", "Туроператор"),
        (
            "R-3001",
            382,
            "Ivan",
            "Petrov",
            "Sales Manager",
            "Nordic Trails AB",
            "Business & Incentive Travel",
            "Деловой туризм",
        ),
    ]
    payloads = []
    for key, type_id, first, last, job, company, category_en, category_ru in people:
        payloads.append(
            {
                "type_id": type_id,
                "default_container_id": 90001,
                "generate_relationships": 1,
                "new_event_join_type": "join_and_patch",
                "registration_id": key,
                "name": f"{first} {last}",
                "first_name": first,
                "last_name": last,
                "job_title": job,
                "company_name": company,
                "headline": f"{job} - {company}" if job else company,
                "email": f"{key.lower()}@example.com",
                "location_code": "en-gb",
                "metadata_raw": {
                    "product_category": [{"en-gb": category_en, "ru-ru": category_ru}],
                },
            }
        )
    return payloads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", 8900)))
    parser.add_argument("--once", action="store_true", help="stop after the push, do not wait")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    var = ROOT / "var" / "local"
    var.mkdir(parents=True, exist_ok=True)
    db = var / "sandbox.sqlite"
    db.unlink(missing_ok=True)
    sandbox = start_sandbox(args.port, db)
    root = f"http://127.0.0.1:{args.port}"
    try:
        settings = ClientSettings(base_url=f"{root}/1", token=DEMO_TOKEN, progress_interval=2)
        payloads = demo_payloads()
        with GripClient(settings) as client:
            outcomes = list(client.push(payloads, total=len(payloads)))
            report = client.read_back(payloads)
        print()
        print(f"Pushed {len(outcomes)} demo records to the Grip sandbox at {root}/1:")
        for outcome in outcomes:
            print(
                f"  {outcome.registration_id:8} {outcome.outcome.value:8} grip id "
                f"{outcome.grip_id} in {outcome.latency * 1000:.0f} ms"
            )
        state = "identical" if report.clean else f"{len(report.differences)} differences"
        print(f"Read back {report.checked} records from the sandbox: {state}.")
        print(f"\nLook at {root}/ for the registrations and the request log;")
        print(f"the API answers at {root}/1 with the token {DEMO_TOKEN!r}.")
        if args.once:
            return 0
        print("Press Ctrl-C to stop the sandbox.")
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        try:
            sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(sandbox.pid, signal.SIGKILL)
        print("Stopped the sandbox.")


if __name__ == "__main__":
    raise SystemExit(main())
