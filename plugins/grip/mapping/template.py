"""Templates that combine fields: ``"{job_title|title} - {company_name}"``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from grip.mapping.spec import SIMPLE_TRANSFORMS

SOURCE_PREFIX = "source."
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True)
class Placeholder:
    """One ``{...}`` of a template: a field of the mapping or a source column, then transforms."""

    name: str
    is_column: bool
    transforms: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    """A parsed template: ``literals[i]`` stands before ``placeholders[i]``; one more at the end.

    Rendering drops a separator (the literal between two placeholders) when either side is empty,
    so ``"{city}, {country}"`` gives ``"Paris"`` rather than ``"Paris, "``. The text before the
    first placeholder goes with the first one and the text after the last with the last one
    (``"Dr. {last_name}"``, ``"({source.city})"``); a row whose placeholders are all empty gets
    no value.
    """

    literals: tuple[str, ...]
    placeholders: tuple[Placeholder, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the mapping's fields the template reads."""
        return tuple(p.name for p in self.placeholders if not p.is_column)

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the source columns the template reads."""
        return tuple(p.name for p in self.placeholders if p.is_column)


def parse_template(text: str) -> Template:
    """Parse a template; raise ValueError saying what is wrong and how to write it.

    ``{first_name}`` reads a field of the mapping (after its transforms), ``{source.city}`` reads a
    source column, ``{job_title|title}`` applies simple transforms; ``{{`` and ``}}`` are braces.
    """
    literals: list[str] = []
    placeholders: list[Placeholder] = []
    current = ""
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        current += text[position : match.start()]
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            current += token[0]
            continue
        if match.group(1) is None:
            raise ValueError(
                f"template {text!r} has an unpaired {token!r}; write '{token * 2}' for a brace"
            )
        placeholders.append(_placeholder(match.group(1), text))
        literals.append(current)
        current = ""
    current += text[position:]
    literals.append(current)
    if not placeholders:
        raise ValueError(f"template {text!r} names no field; use 'const:' for fixed text")
    return Template(tuple(literals), tuple(placeholders))


def _placeholder(inner: str, text: str) -> Placeholder:
    parts = [part.strip() for part in inner.split("|")]
    name, transforms = parts[0], tuple(parts[1:])
    if not name:
        raise ValueError(f"template {text!r} has an empty placeholder '{{{inner}}}'")
    for transform in transforms:
        if transform not in SIMPLE_TRANSFORMS:
            known = ", ".join(SIMPLE_TRANSFORMS)
            raise ValueError(
                f"template {text!r}: {transform!r} is not a transform usable in a template "
                f"({known})"
            )
    if name.startswith(SOURCE_PREFIX):
        column = name[len(SOURCE_PREFIX) :]
        if not column:
            raise ValueError(f"template {text!r}: write a column name after 'source.'")
        return Placeholder(column, True, transforms)
    return Placeholder(name, False, transforms)
