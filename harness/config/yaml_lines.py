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


# Limits on a suite file. Suites are a few dozen lines; these stop hostile input (an alias
# "billion laughs", a self-referencing anchor, thousands of nested brackets) long before it costs time.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 200_000  # nodes after alias expansion


# libyaml's composer: ~6x faster than PyYAML's own, with the same marks, and it refuses nesting
# beyond its own limit instead of recursing; PyYAML's pure-Python one where libyaml is missing.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Hostile(Exception):
    pass


def _check_graph(root: yaml.Node) -> None:
    """Depth, alias cycles and expanded size of the node graph, each node's expansion counted once."""
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk, so deep input cannot overflow Python's stack here
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            expanded[key] = 1 + sum(expanded[id(c)] for c in children)
            if expanded[key] > MAX_NODES:
                raise _Hostile(f"the document expands to more than {MAX_NODES:,} values (aliases that repeat "
                               f"aliases?); a suite needs far fewer")
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise _Hostile("an alias refers to the mapping or list that contains it (a cycle)")
        if depth > MAX_DEPTH:
            raise _Hostile(f"nesting is deeper than {MAX_DEPTH} levels")
        on_path.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _Hostile("an alias refers to the mapping or list that contains it (a cycle)")
            if id(child) not in expanded:
                stack.append((child, depth + 1, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _walk(node: yaml.Node, path: PathKey, lines: LineMap, problems: list[Problem]) -> None:
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.tag}>"
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
        size = path.stat().st_size
        if size > MAX_BYTES:
            return None, lines, [Problem(name, None, "", f"the file is {size:,} bytes; a suite may be at most "
                                                        f"{MAX_BYTES:,}")]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, lines, [Problem(name, None, "", f"cannot read the file: {exc}")]
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> tuple[Any, LineMap, list[Problem]]:
    """Compose the node graph, check it is a bounded tree, then build the data from it (one parse)."""
    lines = LineMap(name)
    try:
        root = yaml.compose(text, Loader=_LOADER)
        if root is None:
            return None, lines, []
        _check_graph(root)
        loader = yaml.SafeLoader("")
        try:
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except _Hostile as exc:
        return None, lines, [Problem(name, None, "", f"refused: {exc}")]
    except RecursionError:
        return None, lines, [Problem(name, None, "", f"refused: nesting is deeper than {MAX_DEPTH} levels")]
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
