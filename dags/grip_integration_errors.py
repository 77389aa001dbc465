"""Reports broken integration files as an import error of this file, naming each file's problem.

The DAGs of the good files come from grip_integrations.py and stay visible meanwhile.
"""

from __future__ import annotations

from pathlib import Path

from grip.airflow.dags import integrations_dir, load_all
from grip.errors import ConfigError

_, _BROKEN = load_all(integrations_dir(Path(__file__).resolve().parent))
if _BROKEN:
    raise ConfigError(
        f"{len(_BROKEN)} integration file(s) could not be loaded; their DAGs are missing:\n"
        + "\n".join(_BROKEN)
    )
