"""Mappings: YAML files that say how source columns become Grip payloads, and the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grip.mapping.loader import MappingSpec, check_integration, check_mapping, load_mapping

if TYPE_CHECKING:
    from grip.mapping.engine import MappedChunk, Mapper

__all__ = [
    "MappedChunk",
    "Mapper",
    "MappingSpec",
    "check_integration",
    "check_mapping",
    "load_mapping",
]


def __getattr__(name: str) -> Any:
    # the engine needs pandas and pyarrow; loading a mapping (e.g. to check it) does not
    if name in ("Mapper", "MappedChunk"):
        from grip.mapping import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
