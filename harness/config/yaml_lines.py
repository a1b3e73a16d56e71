"""Read YAML and remember the line of every key and value, so errors can say file:line.

PyYAML parses values but forgets positions; its node graph keeps them. We walk the nodes
once beside the parsed data (written by hand: no YAML library maps paths to lines for us).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import Problem

PathKey = tuple[Any, ...]


def format_path(path: PathKey) -> str:
    """('methods', 2, 'search', 'lr') -> 'methods[2].search.lr'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class LineMap:
    def __init__(self, file: str):
        self.file = file
        self.lines: dict[PathKey, int] = {}

    def line_of(self, path: PathKey) -> int | None:
        """The line of the longest known prefix of path (a missing key points at its parent)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: PathKey, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), message)


def _walk(node: yaml.Node, path: PathKey, lines: LineMap, problems: list[Problem]) -> None:
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(
                    Problem(lines.file, key_node.start_mark.line + 1, format_path(path + (key,)),
                            f"duplicate key {key!r}: each key may appear once")
                )
            seen.add(key)
            lines.lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, problems)


def read_yaml(path: Path) -> tuple[Any, LineMap, list[Problem]]:
    """Parse a YAML file; return (data, line map, problems). Never raises for bad input."""
    name = str(path)
    lines = LineMap(name)
    if not path.exists():
        return None, lines, [Problem(name, None, "", "file not found")]
    if not path.is_file():
        return None, lines, [Problem(name, None, "", "not a file")]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, lines, [Problem(name, None, "", f"cannot read the file: {exc}")]
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"YAML syntax error: {reason}" + (f" ({context})" if context else "")
        return None, lines, [Problem(name, line, "", message)]
    problems: list[Problem] = []
    if root is not None:
        _walk(root, (), lines, problems)
    return data, lines, problems
