"""Great Expectations glue: an ephemeral context, a suite built from rules, runs and Data Docs.

great_expectations is imported inside these functions only: importing it takes seconds.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from grip.errors import ConfigError
from grip.validation.rules import Rule
from grip.yamlfile import read_yaml

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_shared: Any = None
_names = itertools.count(1)


def gx_context() -> Any:
    """The process's shared ephemeral GX context (created on first use; nothing on disk)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = new_context()
        return _shared


def new_context() -> Any:
    """A new ephemeral GX context with analytics and progress bars off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    # NOTE: GX fingerprints every pandas batch under 1 GB by hashing each cell (about 10 ms a
    # column per 50,000 rows, as much as the checks themselves); the fingerprint only labels the
    # batch in Data Docs, so it is turned off.
    pandas_execution_engine.HASH_THRESHOLD = 0

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


class SuiteRunner:
    """One GX suite (the rules of one mapping) on a pandas dataframe asset of a context."""

    def __init__(self, context: Any, name: str, rules: list[Rule], mapping_path: Path):
        import great_expectations as gx

        self.context = context
        self.name = f"{name}_{next(_names)}"
        source = context.data_sources.add_pandas(f"grip_{self.name}")
        asset = source.add_dataframe_asset(name=f"{self.name}_rows")
        batch = asset.add_batch_definition_whole_dataframe(f"{self.name}_chunk")
        suite = gx.ExpectationSuite(name=f"{self.name}_suite")
        for index, rule in enumerate(rules):
            suite.add_expectation(_expectation(gx, rule, index, mapping_path))
        self.suite = context.suites.add(suite)
        self.definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{self.name}_validation", data=batch, suite=self.suite)
        )

    def run(self, frame: pd.DataFrame, result_format: str = "COMPLETE") -> Any:
        """Validate a frame; return GX's ExpectationSuiteValidationResult."""
        return self.definition.run(
            batch_parameters={"dataframe": frame}, result_format={"result_format": result_format}
        )

    def write_data_docs(self, folder: Path) -> Path:
        """Render the runs of this suite as Data Docs HTML into ``folder``; return index.html."""
        folder.mkdir(parents=True, exist_ok=True)
        store = self.context.validation_results_store
        keys = [
            key
            for key in store.list_keys()
            if key.expectation_suite_identifier.name == self.suite.name
        ]
        site = f"{self.name}_docs"
        self.context.add_data_docs_site(
            site,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(folder),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        try:
            self.context.build_data_docs(site_names=[site], resource_identifiers=keys)
        finally:
            self.context.delete_data_docs_site(site)
        return folder / "index.html"


def _expectation(gx: Any, rule: Rule, index: int, mapping_path: Path) -> Any:
    class_name = "".join(part.capitalize() for part in rule.expectation.split("_"))
    kind = getattr(gx.expectations, class_name, None)
    meta = {"grip_rule": rule.name, "grip_index": index}
    if kind is None:
        raise _mapping_problem(
            rule, mapping_path, f"great_expectations has no expectation {rule.expectation!r}"
        )
    try:
        return kind(column=rule.column, meta=meta, **rule.kwargs)
    except Exception as err:  # GX raises pydantic and its own errors for bad arguments
        if rule.source_index is None:
            raise
        raise _mapping_problem(rule, mapping_path, str(err).splitlines()[0]) from err


def _mapping_problem(rule: Rule, mapping_path: Path, reason: str) -> ConfigError:
    problem = read_yaml(mapping_path).problem(
        ("expectations", rule.source_index or 0),
        f"the expectation cannot be built: {reason}; check its type and kwargs against the "
        "Great Expectations expectation gallery",
    )
    return ConfigError(str(problem))
