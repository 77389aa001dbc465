"""Command line of the sandbox: ``python -m sandbox --port 8900 [--config FILE] [fault flags]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from grip.errors import ConfigError
from sandbox.config import DEFAULT_DB, DEFAULT_HOST, DEFAULT_PORT, SandboxConfig, build_config

logger = logging.getLogger(__name__)

# Fault flags: (settings key, type, help).
_FAULT_FLAGS: tuple[tuple[str, Any, str], ...] = (
    ("latency_ms", float, "time from an API request's arrival to its answer, in milliseconds"),
    ("jitter_ms", float, "extra delay drawn from 0 to this many milliseconds"),
    ("rate_limit_rps", float, "API requests per second let through; more get 429"),
    ("rate_limit_burst", int, "requests that may arrive at once before the limit bites"),
    ("retry_after", str, "what a 429 carries: seconds, date or none"),
    ("retry_after_seconds", float, "the delay a 429 announces (default 1)"),
    ("error_500_share", float, "share of API requests answered 500"),
    ("error_502_share", float, "share of API requests answered 502"),
    ("error_503_share", float, "share of API requests answered 503"),
    ("drop_share", float, "share of API requests whose connection is closed without answer"),
    ("slow_share", float, "share of API answers held back by --slow-ms"),
    ("slow_ms", float, "how long a slow answer is held back, in milliseconds"),
    ("seed", int, "seed of the fault draws, for reproducible runs"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m sandbox``."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local stand-in for the Grip registration API.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite file, or :memory: (default)")
    parser.add_argument(
        "--config",
        help="YAML file with applications (id, name, token, languages, types, "
        "containers) and an optional faults block",
    )
    parser.add_argument("--token", help="token of the demo application (without --config)")
    parser.add_argument("--access-log", action="store_true", help="also print one line per request")
    faults = parser.add_argument_group("fault and load switches (also POST /_sandbox/settings)")
    for key, kind, text in _FAULT_FLAGS:
        faults.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, help=text)
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Turn parsed arguments into the sandbox's start settings.

    Raises:
        ConfigError: The config file or a flag is wrong.
    """
    overrides = {key: getattr(args, key) for key, _, _ in _FAULT_FLAGS}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    return build_config(
        config_file=args.config, token=args.token, db=args.db, fault_overrides=overrides
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start the sandbox and serve until interrupted; return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = config_from_args(args)
    except ConfigError as err:
        print(f"sandbox: {err}", file=sys.stderr)
        return 2

    from sandbox.server import serve

    root = f"http://{args.host}:{args.port}"
    print(f"Grip API sandbox on {root} (page {root}/)", flush=True)
    print(f"  base URL: {root}/1", flush=True)
    for app in config.applications:
        # The sandbox's tokens are made up for local use; showing them is the point.
        print(f"  application {app.id} {app.name!r}: token {app.token}", flush=True)
    serve(config, args.host, args.port, access_log=args.access_log)
    return 0
