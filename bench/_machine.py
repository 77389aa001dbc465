"""Facts about the machine a benchmark ran on: CPU model, cores, RAM, Python and OS."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def machine_facts() -> dict[str, Any]:
    """Describe this machine for a benchmark's printout and JSON result.

    Returns:
        ``cpu_model``, ``cores`` (logical), ``usable_cores`` (this process's affinity),
        ``ram_gib``, ``python``, ``implementation``, ``os``, ``machine`` and ``measured_at``
        (UTC, ISO 8601).
    """
    ram = _ram_bytes()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def describe(facts: dict[str, Any] | None = None) -> str:
    """One line naming the machine, for a benchmark's printout."""
    f = facts or machine_facts()
    return (
        f"{f['cpu_model']}, {f['cores']} cores ({f['usable_cores']} usable), "
        f"{f['ram_gib']} GiB RAM, "
        f"{f['implementation']} {f['python']}, {f['os']} {f['machine']}"
    )
