"""Load YAML into pydantic models with errors that say exactly what is wrong and where.

Shared by every package that reads configuration (device profiles, gate profiles, the
gateway), so each error reads the same: ``file:line: path.to.field: what to fix``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a config file."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ValueError):
    """A config file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _line_index(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """Record the 1-based line of every key and list item below ``node``."""
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            out[path] = key_node.start_mark.line + 1
            _line_index(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_index(item, (*prefix, str(index)), out)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML text; return the data and a path → line index."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(source, line, "", f"not valid YAML: {problem}")]) from exc
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    return data, lines


def validate(
    model: type[ModelT],
    data: object,
    source: str = "<config>",
    lines: Mapping[tuple[str, ...], int] | None = None,
) -> ModelT:
    """Validate ``data`` as ``model``; raise ConfigError naming every problem and its line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, source, lines or {})) from exc


def problems_from(
    exc: ValidationError, source: str, lines: Mapping[tuple[str, ...], int]
) -> list[ConfigProblem]:
    """Turn pydantic errors into ConfigProblems with the nearest known line."""
    problems = []
    for error in exc.errors(include_url=False):
        path = tuple(str(part) for part in error["loc"])
        line = None
        for depth in range(len(path), -1, -1):
            line = lines.get(path[:depth])
            if line is not None:
                break
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling; see the documented fields)"
        elif "input" in error and error["type"] not in ("missing",):
            message = f"{message} (got {error['input']!r})"
        problems.append(ConfigProblem(source, line, ".".join(path), message))
    return problems


def read_yaml_file(path: str | Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """The YAML in the file at ``path`` with each key path's line (see :func:`parse_yaml`);
    ConfigError when it cannot be read or parsed."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(source, None, "", f"cannot read: {exc}")]) from exc
    return parse_yaml(text, source)


def load_yaml_model(model: type[ModelT], path: str | Path) -> ModelT:
    """Read ``path`` and validate it as ``model``; ConfigError says what to fix."""
    data, lines = read_yaml_file(path)
    return validate(model, data, str(path), lines)
