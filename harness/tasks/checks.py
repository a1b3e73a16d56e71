"""The data checks: every row of every split read once, each fault named by file, line and column.
What a row must hold comes from its task family (text fields, the label field, the family's own
row check); the checks are the same for local files (at validate time and at load) and for hub
splits (once loaded). A suite's data.on_bad_rows: drop drops the rows instead, and says how many."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from harness.tasks.rows import FileProblem, Row

# what a reason is called where rows are counted (the record, the terminal, the page)
REASONS = {
    "unparseable": "cannot be parsed",
    "missing_column": "lack a column",
    "empty_text": "empty or non-text",
    "bad_label": "missing or non-scalar label",
    "mixed_types": "a value of another type than the column's",
    "answer_not_an_option": "answer not among the options",
    "same_pair": "chosen equals rejected",
}
SHOWN_PER_REASON = 3  # rows listed one by one per split and reason; the rest are counted


@dataclass(frozen=True)
class BadRow:
    line: int
    column: str | None  # the data's column (not the task field) where one is to blame
    reason: str  # a key of REASONS
    message: str


@dataclass
class SplitScan:
    """One split, read whole: how many rows, which are bad and why, and its label values."""

    split: str
    where: str  # the file (or hub split) as the user knows it
    word: str = "line"  # what a row's number counts: line, item or row
    rows: int = 0
    bad: list[BadRow] = field(default_factory=list)
    labels: Counter = field(default_factory=Counter)  # label (as text) -> rows
    first_line: dict[str, int] = field(default_factory=dict)  # label -> its first row's number
    label_column: str = ""  # the data's column that holds the labels, where the family has one
    file_problem: FileProblem | None = None
    good: list[dict[str, Any]] | None = None  # field -> value of each good row (collect=True)

    def dropped(self) -> dict[str, int]:
        """Reason -> rows, for the record (a row with several faults counted once, by its first)."""
        first: dict[int, str] = {}
        for b in self.bad:
            first.setdefault(b.line, b.reason)
        return dict(Counter(first.values()))


def _kind(value: Any) -> str | None:
    """A value's JSON type, with int and float as one (both numbers); None for null."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "list"
    return "object"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def text_problem(value: Any) -> str | None:
    """Why a value cannot be a text field, or None."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return "is null; a text field needs a non-empty string"
    if not isinstance(value, str):
        return f"is a {_kind(value)} ({_shown(value)}); a text field needs a string"
    if not value.strip():
        return "is empty"
    return None


def label_text(value: Any) -> str | None:
    """A label as the classifier names its class (str of a scalar); None where it is no label."""
    if _kind(value) in (None, "list", "object"):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return str(value)


def scan(rows: Iterable[Row], family, mapping: dict[str, str], split: str, where: str, word: str = "line",
         collect: bool = False) -> SplitScan:
    """Read every row once: the family's checks per row, then one type per column across rows.
    mapping: task field -> the data's column, for the fields the data has. collect=True keeps the
    good rows (field -> value) for loading."""
    out = SplitScan(split, where, word, good=[] if collect else None)
    text_fields = [f for f in family.text_fields if f in mapping]
    label = family.label_field if family.label_field in mapping else None
    required = [f for f in family.fields if f not in family.optional_fields]
    out.label_column = mapping[label] if label is not None else ""
    types: dict[str, dict[str, list[int]]] = {}  # column -> JSON type -> rows' numbers
    kept: list[tuple[int, str | None, dict | None]] = []  # (line, label, values where collected)
    try:
        for row in rows:
            out.rows += 1
            if row.values is None:
                out.bad.append(BadRow(row.line, None, "unparseable", row.error or "cannot be parsed"))
                continue
            problems = _row_problems(row.values, family, mapping, text_fields, label, required)
            if problems:
                out.bad += [BadRow(row.line, column, reason, message) for column, reason, message in problems]
                continue
            for column in mapping.values():
                kind = _kind(row.values.get(column))
                if kind is not None:
                    types.setdefault(column, {}).setdefault(kind, []).append(row.line)
            name = label_text(row.values[mapping[label]]) if label is not None else None
            kept.append((row.line, name, {f: row.values.get(c) for f, c in mapping.items()} if collect else None))
    except FileProblem as exc:
        out.file_problem = exc
        return out
    mixed = _mixed_types(types, out)
    for line, name, values in kept:
        if line in mixed:
            continue
        if label is not None:
            out.labels[name] += 1
            out.first_line.setdefault(name, line)
        if collect:
            out.good.append(values)
    return out


def _row_problems(values: dict, family, mapping: dict[str, str], text_fields: list[str], label: str | None,
                  required: list[str]) -> list[tuple[str | None, str, str]]:
    """(column, reason, message) for each fault of one row."""
    out = []
    for f in required:
        if f in mapping and mapping[f] not in values:
            out.append((mapping[f], "missing_column", f"this row has no {mapping[f]!r} (for {f})"))
    for f in text_fields:
        if mapping[f] in values:
            why = text_problem(values[mapping[f]])
            if why:
                out.append((mapping[f], "empty_text", why if mapping[f] == f else f"({f}) {why}"))
    if label is not None and mapping[label] in values and label_text(values[mapping[label]]) is None:
        value = values[mapping[label]]
        what = "null" if _kind(value) is None else "empty" if isinstance(value, str) else f"a {_kind(value)}"
        out.append((mapping[label], "bad_label", f"is {what}; a label is one text or number"))
    if family.row_check is not None and not out:
        fields = {f: values.get(c) for f, c in mapping.items()}
        out += [(mapping.get(f, f), reason, message) for f, reason, message in family.row_check(fields)]
    return out


def _mixed_types(types: dict[str, dict[str, list[int]]], out: SplitScan) -> set[int]:
    """Rows whose value's type differs from the column's usual one (1 beside "1" in a label column:
    two classes to a classifier, and one a data loader would refuse): bad rows, the column's most
    common type kept."""
    lines: set[int] = set()
    for column, kinds in types.items():
        if len(kinds) < 2:
            continue
        usual = max(kinds, key=lambda k: len(kinds[k]))
        counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items(), key=lambda kv: -len(kv[1])))
        for kind, rows in kinds.items():
            if kind == usual:
                continue
            for line in rows:
                lines.add(line)
                out.bad.append(BadRow(line, column, "mixed_types",
                                      f"a {kind} where the column holds {usual} values ({counts})"))
    return lines


def unseen_labels(scans: dict[str, SplitScan]) -> dict[str, Counter]:
    """Per validation/test split: labels (or answers) that never occur in the training split, with
    their rows. A classifier gets a class it never trained on; its test rows cannot be right."""
    train = scans.get("train")
    if train is None or not train.labels:
        return {}
    out = {}
    for split, s in scans.items():
        if split == "train":
            continue
        missing = Counter({k: v for k, v in s.labels.items() if k not in train.labels})
        if missing:
            out[split] = missing
    return out


def row_messages(s: SplitScan) -> list[tuple[int | None, str | None, str]]:
    """(line, column, message) to show for a split: its file problem, or its bad rows, a few per
    reason one by one and the rest counted."""
    if s.file_problem is not None:
        return [(s.file_problem.line, None, s.file_problem.message)]
    by_reason: dict[str, list[BadRow]] = {}
    for b in sorted(s.bad, key=lambda b: b.line):
        by_reason.setdefault(b.reason, []).append(b)
    out = []
    for reason, bad in by_reason.items():
        out += [(b.line, b.column, b.message) for b in bad[:SHOWN_PER_REASON]]
        rest = bad[SHOWN_PER_REASON:]
        if rest:
            lines = ", ".join(str(b.line) for b in rest[:8]) + (", ..." if len(rest) > 8 else "")
            out.append((rest[0].line, rest[0].column,
                        f"and {len(rest)} more {s.word}s like this ({REASONS[reason]}): {s.word}s {lines}"))
    return out


def unseen_message(label: str, rows: int, train_where: str) -> str:
    return (f"label {label!r} ({rows} row{'s' if rows != 1 else ''}) never occurs in the training split "
            f"({train_where}): the model cannot learn a class it never sees. Fix the labels, or set "
            f"data.allow_unseen_labels: true to keep them (counted and shown on the report)")


def drop_summary(dropped: dict[str, dict[str, int]]) -> str:
    """'train: 3 rows dropped (2 cannot be parsed, 1 empty or non-text); test: ...' ('' where none)."""
    parts = []
    for split, reasons in dropped.items():
        n = sum(reasons.values())
        if n:
            why = ", ".join(f"{c} {REASONS.get(r, r)}" for r, c in reasons.items())
            parts.append(f"{split}: {n} row{'s' if n != 1 else ''} dropped ({why})")
    return "; ".join(parts)
