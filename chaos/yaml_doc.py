"""YAML files read strictly: the document with the line of every key path, and one-line
`file:line: key.path: problem` errors (experiment files, suites)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lab.model.errors import ExperimentError


def read_yaml(path: Path) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The YAML document and the line number of every key path in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ExperimentError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise ExperimentError(f"{path}: cannot read: {err.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ExperimentError(f"{path}{where}: malformed YAML: {problem}") from None
    lines: dict[tuple[Any, ...], int] = {}
    _index(node, (), lines)
    return data, lines


def _index(node: Any, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    if node is None:
        return
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[path + (key.value,)] = key.start_mark.line + 1
            _index(value, path + (key.value,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), lines)


class Where:
    """Builds `file:line: key.path: problem` errors for one document (its lines from `read_yaml`)."""

    def __init__(self, source: str, lines: Mapping[tuple[Any, ...], int],
                 moved: Mapping[tuple[str, ...], str] | None = None) -> None:
        self.source, self.lines, self.moved = source, lines, moved or {}

    def error(self, path: tuple[Any, ...], problem: str) -> ExperimentError:
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines),
                    None)
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "top"
        return ExperimentError(f"{self.source}{f':{line}' if line else ''}: {key}: {problem}")

    def mapping(self, value: Any, path: tuple[Any, ...], known: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"must be a mapping, got {type(value).__name__}")
        for key in value:
            if key not in known:
                hint = self.moved.get(path[-1:] + (key,)) or self.moved.get((key,))
                raise self.error(path + (key,), hint or f"unknown key; known keys: {', '.join(known)}")
        return value

    def number(self, value: Any, path: tuple[Any, ...], *, zero: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value < 0 or (value == 0 and not zero):
            raise self.error(path, f"must be a number {'>= 0' if zero else '> 0'}, got {value!r}")
        return float(value)
