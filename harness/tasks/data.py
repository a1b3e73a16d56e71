"""Load a task's splits from built-in, local (JSONL, CSV, Parquet) or hub data, with a column mapping."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.errors import Problem, UserError
from harness.spec import DataSpec
from harness.tasks.builtin_data import BUILTIN_DATA
from harness.tasks.checks import SplitScan, drop_summary, row_messages, scan, unseen_labels, unseen_message
from harness.tasks.rows import FORMATS, FileProblem, Row, file_columns, line_word, read_rows

SPLITS = ("train", "validation", "test")


def resolve_path(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def shown_path(p: Path) -> str:
    """A data file as a message names it: relative to the current folder where it lies below it."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def _take(ds, size: int | None, seed: int):
    if size is None or size >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(size))


def _mapping(spec: DataSpec, family, columns: list[str]) -> dict[str, str]:
    """Task field -> the data's column, for every field the data has (an optional field may be absent)."""
    out = {}
    for f in family.fields:
        column = spec.columns.get(f, f)
        if column in columns or f not in family.optional_fields:
            out[f] = column
    return out


def scan_files(spec: DataSpec, family, base_dir: Path, collect: bool = False) -> dict[str, SplitScan]:
    """Every split file read whole through the family's checks (tasks/checks.py)."""
    out = {}
    for split, path in spec.files.items():
        p = resolve_path(path, base_dir)
        try:
            mapping = _mapping(spec, family, file_columns(p))
            out[split] = scan(read_rows(p, list(mapping.values())), family, mapping, split, shown_path(p),
                              line_word(p), collect=collect)
        except FileProblem as exc:
            out[split] = SplitScan(split, shown_path(p), file_problem=exc)
    return out


def scan_dataset(ds, spec: DataSpec, family, split: str, where: str) -> SplitScan:
    """A loaded (hub) split through the same checks; rows are numbered from 1 in the split's order."""
    mapping = _mapping(spec, family, ds.column_names)
    present = [c for c in dict.fromkeys(mapping.values()) if c in ds.column_names]
    rows = (Row(i + 1, values) for i, values in enumerate(ds.select_columns(present)))
    return scan(rows, family, mapping, split, where, "row")


def check_problems(spec: DataSpec, scans: dict[str, SplitScan]) -> list[Problem]:
    """What stops a run: each split's unreadable file or bad rows (unless on_bad_rows: drop), a split
    left with no row, and labels that only validation/test have (unless allow_unseen_labels)."""
    out = []
    for s in scans.values():
        if s.file_problem is None and not s.rows:
            out.append(Problem(s.where, None, "", f"the {s.split} file holds no rows"))
        if s.file_problem is not None or spec.on_bad_rows == "error":
            out += [Problem(s.where, line, column or "", message) for line, column, message in row_messages(s)]
        elif s.rows and s.rows == len({b.line for b in s.bad}):
            out.append(Problem(s.where, None, "", f"no usable row in the {s.split} split: all {s.rows} are bad "
                                                  f"({drop_summary({s.split: s.dropped()})})"))
    if not spec.allow_unseen_labels and all(s.file_problem is None for s in scans.values()):
        train = scans.get("train")
        for split, missing in unseen_labels(scans).items():
            for label, rows in missing.most_common():
                out.append(Problem(scans[split].where, scans[split].first_line.get(label), scans[split].label_column,
                                   unseen_message(label, rows, train.where)))
    return out


def data_report(spec: DataSpec, scans: dict[str, SplitScan]) -> dict:
    """What the record keeps of the checks: rows read and dropped per split and reason, and labels
    that only validation/test have (allowed by data.allow_unseen_labels)."""
    unseen = unseen_labels(scans)
    report = {"rows": {k: s.rows for k, s in scans.items()},
              "dropped": {k: s.dropped() for k, s in scans.items() if s.bad},
              "unseen_labels": {k: dict(v) for k, v in unseen.items()}}
    report["summary"] = drop_summary(report["dropped"])
    return report


VALIDATION_FRACTION = 0.1  # of train, where the data has no validation split


def _checked_raw(spec: DataSpec, family, base_dir: Path):
    """(split -> Dataset of the good rows, the checks' report) from local files or the hub; a
    UserError with every problem where the checks stop the run."""
    import datasets

    if spec.files is not None:
        scans = scan_files(spec, family, base_dir, collect=True)
        problems = check_problems(spec, scans)
        if problems:
            raise UserError(problems)
        raw = {}
        for split, s in scans.items():
            try:
                raw[split] = datasets.Dataset.from_list(s.good)
            except (TypeError, ValueError) as exc:  # pyarrow refuses what the checks let through
                raise UserError([Problem(s.where, None, "", f"cannot be loaded as a table: {exc}")]) from None
        return raw, data_report(spec, scans)
    hub = spec.hub
    try:
        raw = {split: datasets.load_dataset(hub.name, hub.config, split=name) for split, name in hub.splits.items()}
    except Exception as exc:  # the hub or the cache failed: say which data set, not a traceback
        raise UserError(f"hub data set {hub.name!r} (config {hub.config!r}) could not be loaded: {exc}")
    scans = {split: scan_dataset(ds, spec, family, split, f"hub {hub.name} split {hub.splits[split]}")
             for split, ds in raw.items()}
    problems = check_problems(spec, scans)
    if problems:
        raise UserError(problems)
    for split, s in scans.items():
        if s.bad:
            bad = {b.line - 1 for b in s.bad}
            raw[split] = raw[split].select([i for i in range(len(raw[split])) if i not in bad])
    return raw, data_report(spec, scans)


def load_splits(spec: DataSpec, family, base_dir: Path, seed: int = 0, cap: int | None = None):
    """(DatasetDict with train/validation/test and exactly the task's fields as columns, where the
    validation split came from, what the data checks found: None for built-in data)."""
    import datasets

    datasets.disable_progress_bars()
    report = None
    if spec.builtin is not None:
        entry = BUILTIN_DATA.get(spec.builtin)
        full = datasets.load_dataset("json", data_files=str(entry.path), split="train")
        raw = {s: full.filter(lambda row, s=s: row["split"] == s) for s in SPLITS}
    else:
        raw, report = _checked_raw(spec, family, base_dir)
    source = {"origin": "given"}
    if "validation" not in raw:  # carve a fixed, seeded validation split out of train
        parts = raw["train"].train_test_split(test_size=VALIDATION_FRACTION, seed=seed)
        raw["train"], raw["validation"] = parts["train"], parts["test"]
        source = {"origin": "carved from train", "fraction": VALIDATION_FRACTION, "seed": seed}
    sizes = {"train": spec.train_size, "validation": spec.validation_size, "test": spec.test_size}
    out = {}
    for split in SPLITS:
        ds = raw[split]
        if spec.builtin is not None or spec.hub is not None:
            mapping = {c: f for f, c in _mapping(spec, family, ds.column_names).items()}
            ds = ds.select_columns(list(mapping)).rename_columns({k: v for k, v in mapping.items() if k != v})
        for f in family.fields:  # optional fields the data lacks get their default
            if f not in ds.column_names:
                ds = ds.add_column(f, [family.optional_fields[f]] * len(ds))
        ds = _take(ds, sizes[split], seed)
        out[split] = ds.select(range(min(cap, len(ds)))) if cap is not None else ds
    return datasets.DatasetDict(out), {**source, "size": len(out["validation"])}, report


def _row_hashes(split) -> list[str]:
    return [hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest() for row in split]


def train_test_duplicates(splits) -> int:
    """Test examples that stand, field for field, in the training split too (leakage the score hides)."""
    train = set(_row_hashes(splits["train"]))
    return sum(h in train for h in _row_hashes(splits["test"]))


def fingerprint(splits) -> str:
    """sha256 over every example of every split: two runs on the same data share it."""
    h = hashlib.sha256()
    for split in SPLITS:
        h.update(split.encode())
        for row in splits[split]:
            h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _shared_sources(spec: DataSpec, base_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
    """Two splits read from one source (the same file, the same hub split): a test score on the
    training data, or choices made on the test data, would look like skill."""
    if spec.files is not None:
        where = {}
        for split, path in spec.files.items():
            try:
                where[split] = (resolve_path(path, base_dir).resolve(), ("files", split))
            except (OSError, ValueError, RuntimeError):
                pass  # reported with the file itself
    elif spec.hub is not None:
        where = {split: (name, ("hub", "splits", split)) for split, name in spec.hub.splits.items()}
    else:
        return []
    out = []
    for a, b in (("train", "test"), ("train", "validation"), ("validation", "test")):
        if a in where and b in where and where[a][0] == where[b][0]:
            out.append((where[b][1], f"the {b} split reads the same source as the {a} split ({where[a][0]}): "
                                     f"{b} scores would be taken on data the model trained on or was chosen on; "
                                     f"give it its own file or hub split"))
    return out


def data_problems(spec: DataSpec, family, base_dir: Path) -> list[tuple[tuple[Any, ...], str] | Problem]:
    """(relative YAML path, message) for every problem of the suite's data entry, and a Problem at
    the data file's own line for every problem inside a local file (each file read whole, streamed)."""
    problems: list = []
    fields, optional = family.fields, tuple(family.optional_fields)
    mapped = {f: spec.columns.get(f, f) for f in fields if f not in optional or f in spec.columns}
    for key in spec.columns:
        if key not in fields:
            problems.append((("columns", key), f"unknown task field {key!r}: this task reads {', '.join(fields)}"))
    problems += _shared_sources(spec, base_dir)
    if spec.builtin is not None:
        if spec.builtin not in BUILTIN_DATA:
            problems.append((("builtin",), BUILTIN_DATA.unknown_message(spec.builtin)))
            return problems
        have = {"builtin": BUILTIN_DATA.get(spec.builtin).columns()}
    elif spec.files is not None:
        for required in ("train", "test"):
            if required not in spec.files:
                problems.append((("files",), f"a {required} file is required (validation is optional)"))
        have = {}
        for split, path in spec.files.items():
            try:
                p = resolve_path(path, base_dir)
                found = p.is_file()
            except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, an unknown ~user
                problems.append((("files", split), f"not a usable path {path!r}: {exc}"))
                continue
            if not found:
                problems.append((("files", split), f"data file not found: {p}"))
            elif p.suffix.lower() not in FORMATS:
                problems.append((("files", split), f"unsupported file type {p.suffix!r}: use {', '.join(FORMATS)}"))
            else:
                try:
                    have[split] = [str(c) for c in file_columns(p)]
                except FileProblem as exc:
                    problems.append(Problem(shown_path(p), exc.line, "", exc.message))
                except OSError as exc:
                    problems.append((("files", split), f"cannot read {p}: {exc}"))
    else:
        return problems  # hub data is checked when it is loaded
    missing = False
    for where, columns in have.items():
        for field, column in mapped.items():
            if column not in columns:
                missing = True
                path = ("columns", field) if field in spec.columns else ((where,) if where == "builtin" else ("files", where))
                problems.append((path, f"column {column!r} (for {field}) is missing; the data has: {', '.join(columns)}"))
    if spec.files is not None and not missing and len(have) == len(spec.files):
        problems += check_problems(spec, scan_files(spec, family, base_dir))
    return problems
