"""Load a task's splits from built-in, local (JSONL, CSV, Parquet) or hub data, with a column mapping."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from harness.spec import DataSpec
from harness.errors import UserError
from harness.tasks.builtin_data import BUILTIN_DATA

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SPLITS = ("train", "validation", "test")


def resolve_path(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def file_columns(path: Path) -> list[str]:
    """Column names from the head of a data file, without loading it whole."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt == "json":
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        if path.suffix.lower() == ".json" and first.strip() in ("[", ""):
            rows = json.loads(path.read_text(encoding="utf-8"))
            return list(rows[0]) if rows else []
        return list(json.loads(first)) if first.strip() else []
    if fmt == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    raise ValueError(f"unsupported data file type {path.suffix!r}: use one of {', '.join(FORMATS)}")


def _take(ds, size: int | None, seed: int):
    if size is None or size >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(size))


VALIDATION_FRACTION = 0.1  # of train, where the data has no validation split


def load_splits(spec: DataSpec, fields: tuple[str, ...], base_dir: Path, seed: int = 0,
                optional: dict | None = None, cap: int | None = None):
    """(DatasetDict with train/validation/test and exactly the task's fields as columns, where the
    validation split came from)."""
    import datasets

    datasets.disable_progress_bars()
    if spec.builtin is not None:
        entry = BUILTIN_DATA.get(spec.builtin)
        full = datasets.load_dataset("json", data_files=str(entry.path), split="train")
        raw = {s: full.filter(lambda row, s=s: row["split"] == s) for s in SPLITS}
    elif spec.files is not None:
        raw = {}
        for split, path in spec.files.items():
            p = resolve_path(path, base_dir)
            raw[split] = datasets.load_dataset(FORMATS[p.suffix.lower()], data_files=str(p), split="train")
    else:
        hub = spec.hub
        try:
            raw = {split: datasets.load_dataset(hub.name, hub.config, split=name)
                   for split, name in hub.splits.items()}
        except Exception as exc:  # the hub or the cache failed: say which data set, not a traceback
            raise UserError(f"hub data set {hub.name!r} (config {hub.config!r}) could not be loaded: {exc}")
    source = {"origin": "given"}
    if "validation" not in raw:  # carve a fixed, seeded validation split out of train
        parts = raw["train"].train_test_split(test_size=VALIDATION_FRACTION, seed=seed)
        raw["train"], raw["validation"] = parts["train"], parts["test"]
        source = {"origin": "carved from train", "fraction": VALIDATION_FRACTION, "seed": seed}
    sizes = {"train": spec.train_size, "validation": spec.validation_size, "test": spec.test_size}
    out = {}
    optional = optional or {}
    for split in SPLITS:
        ds = raw[split]
        mapping = {spec.columns.get(f, f): f for f in fields if spec.columns.get(f, f) in ds.column_names
                   or f not in optional}
        ds = ds.select_columns(list(mapping)).rename_columns({k: v for k, v in mapping.items() if k != v})
        for f in fields:  # optional fields the data lacks get their default
            if f not in ds.column_names:
                ds = ds.add_column(f, [optional[f]] * len(ds))
        ds = _take(ds, sizes[split], seed)
        out[split] = ds.select(range(min(cap, len(ds)))) if cap is not None else ds
    return datasets.DatasetDict(out), {**source, "size": len(out["validation"])}


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


def data_problems(spec: DataSpec, fields: tuple[str, ...], base_dir: Path,
                  optional: tuple[str, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(relative YAML path, message) for every data problem visible without loading the data."""
    problems: list[tuple[tuple[Any, ...], str]] = []
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
                except Exception as exc:  # noqa: BLE001 - any unreadable data file is the user's problem to fix
                    have.pop(split, None)
                    problems.append((("files", split), f"cannot read {p}: {exc}"))
    else:
        return problems  # hub columns are checked when the data set is loaded
    for where, columns in have.items():
        for field, column in mapped.items():
            if column not in columns:
                path = ("columns", field) if field in spec.columns else ((where,) if where == "builtin" else ("files", where))
                problems.append((path, f"column {column!r} (for {field}) is missing; the data has: {', '.join(columns)}"))
    return problems
