"""Load YAML into typed models; every problem names the file, the key path and the line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from grip.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)
KeyPath = tuple[str | int, ...]


class Problem:
    """One problem found in a YAML file: where it is and what would be right."""

    __slots__ = ("file", "line", "message", "path")

    def __init__(self, file: Path | str, path: KeyPath, line: int | None, message: str):
        self.file = str(file)
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = format_path(self.path)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({self!s})"


class YamlDocument:
    """A parsed YAML file that remembers the line of every key and list item."""

    def __init__(self, path: Path, data: Any, lines: dict[KeyPath, int]):
        self.path = path
        self.data = data
        self._lines = lines

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Return the 1-based line of ``path``, or of its nearest ancestor that exists."""
        key = tuple(path)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return self._lines.get((), None)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        return Problem(self.path, tuple(path), self.line_of(path), message)


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(path: Path | str) -> YamlDocument:
    """Parse a YAML file, keeping line numbers; raise ConfigError for unreadable or bad YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the file ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from err
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from err
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return YamlDocument(path, data, lines)


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = path + (key_node.value,)
            lines[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, path + (index,), lines)


def pydantic_problems(doc: YamlDocument, err: PydanticValidationError) -> list[Problem]:
    """Turn a pydantic error into one Problem per failing key, each with its line."""
    problems = []
    for item in err.errors(include_url=False):
        loc = tuple(part for part in item["loc"] if not _is_union_tag(part))
        message = _describe(item)
        problems.append(doc.problem(loc, message))
    return problems


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the chosen member of a tagged union into the location ("sql", "function-after")
    tags = {"sql", "sftp", "file"}
    return isinstance(part, str) and (part.startswith("function-") or part in tags)


def _describe(item: Any) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return "unknown key; check its spelling against the documented keys"
    if kind == "missing":
        return "required key is missing"
    message = str(item["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{message} (got {item.get('input')!r})"
    return message


def load_model(path: Path | str, model: type[ModelT], *, context: dict[str, Any] | None = None):
    """Read ``path`` and validate it as ``model``; raise one ConfigError listing every problem."""
    doc = read_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{doc.path}: expected a mapping of keys at the top level")
    try:
        return doc, model.model_validate(doc.data, context=context)
    except PydanticValidationError as err:
        problems = pydantic_problems(doc, err)
        raise ConfigError(join_problems(problems)) from None


def join_problems(problems: Sequence[Problem]) -> str:
    if len(problems) == 1:
        return str(problems[0])
    return f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
