"""Where a results set lives, behind one interface (RecordStore): files under results/<suite>
(records/<cell>/trial-NNNN.json, each written atomically; suite.yaml; Optuna in optuna.db) or a
PostgreSQL database (records/pg.py). `open_store` opens either from a folder or a URL; the keys of a
saved suite that may change between runs into one set are listed once (CHANGEABLE_KEYS), for resume
and for `harness compare` alike."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from harness.errors import Problem, UserError
from harness.records.schema import TrialRecord, upgrade

SUITE_FILE = "suite.yaml"  # the suite as run, beside the records
STUDY_FILE = "optuna.db"  # a file store's Optuna studies (SQLite)

# Settings that may change between runs into the same results set, or between two sets `harness
# compare` judges, without making their trials incomparable: the budget (raising it resumes the
# search), seeds added, where output goes, how the runner runs, the tolerances compare and the answer
# read the records with, the text.
CHANGEABLE_KEYS = (("name",), ("description",), ("search", "trials_per_cell"), ("confirm",), ("output",),
                   ("runner",), ("compare",), ("decision",))


class RecordStore(Protocol):
    """A results set: its trial records, the suite text they were run from, and its Optuna studies."""

    root: Path  # the local folder for what stays on the machine that runs a trial (adapters, tracking)
    skipped: list[Problem]  # records the last load_all(skip_bad=True) left out

    @property
    def where(self) -> str: ...  # how messages name the set

    @property
    def study_storage_url(self) -> str: ...  # what Optuna opens

    def study_name(self, key: str) -> str: ...  # a study's name in that storage

    def write(self, record: TrialRecord) -> object: ...

    def load_all(self, skip_bad: bool = False) -> list[TrialRecord]: ...

    def load_cell(self, cell_id: str) -> list[TrialRecord]: ...

    def has_records(self) -> bool: ...

    def count(self) -> int: ...  # records held (none read)

    def has_studies(self) -> bool: ...  # whether a run has made its Optuna studies yet

    def saved_suite(self) -> str | None: ...  # the suite text of the last run into this set

    def save_suite(self, text: str) -> None: ...

    def settings(self) -> dict: ...  # the saved suite as data

    def reports_dir(self) -> Path: ...  # where `harness run` put its report (output.reports_dir)


class SavedSuite:
    """What both stores read from their saved suite text the same way."""

    def settings(self) -> dict:
        """The saved suite as data ({} where there is none, or it is not a YAML mapping)."""
        import yaml

        try:
            data = yaml.safe_load(self.saved_suite() or "") or {}
        except yaml.YAMLError:
            data = {}
        return data if isinstance(data, dict) else {}

    def reports_dir(self) -> Path:
        """Where `harness run` put this suite's report: its output.reports_dir (default reports/)."""
        output = self.settings().get("output")
        folder = output.get("reports_dir") if isinstance(output, dict) else None
        return Path(folder) if isinstance(folder, str) and folder else Path("reports")


def open_store(location: str | Path, suite: str | None = None, local_root: Path | None = None) -> RecordStore:
    """The results set at a folder (results/<suite>), or in PostgreSQL: `location` a postgresql:// URL
    with the suite named by `suite` or after a # (URL#SUITE); `local_root` the folder for adapters."""
    from harness.records.pg import PgRecordStore, is_postgres

    if is_postgres(str(location)):
        url, _, named = str(location).partition("#")
        return PgRecordStore(url, suite or named, local_root)
    return FileRecordStore(Path(location))


def setting_differences(before: dict, after: dict) -> list[tuple[str, object, object]]:
    """(dotted key, before, after) for each setting that differs, the CHANGEABLE_KEYS aside."""
    out = []

    def walk(a, b, path: tuple) -> None:
        if path in CHANGEABLE_KEYS:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key), b.get(key), (*path, key))
        elif a != b:
            out.append((".".join(map(str, path)), a, b))

    walk(before, after, ())
    return out


def read_record(path: Path) -> TrialRecord:
    """One record file, upgraded to the current schema; UserError naming the file where it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return TrialRecord.model_validate(upgrade(data))
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON (truncated or hand-edited?): {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:3]:
            where = ".".join(str(p) for p in err["loc"])
            parts.append(f"unknown field {where!r}" if err["type"] == "extra_forbidden" else f"{where}: {err['msg']}")
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        reason = "not a trial record this harness can read: " + "; ".join(parts) + more
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = f"cannot read it: {exc}"
    raise UserError([Problem(str(path), None, "", reason)])


def write_text_atomic(path: Path, data: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class FileRecordStore(SavedSuite):
    """A RecordStore in a folder: results/<suite>/records/<cell>/*.json, suite.yaml, optuna.db."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.skipped: list[Problem] = []  # records the last load left out (skip_bad)

    @property
    def where(self) -> str:
        return str(self.root)

    @property
    def study_storage_url(self) -> str:
        return f"sqlite:///{(self.root / STUDY_FILE).resolve()}"

    def study_name(self, key: str) -> str:
        """A cell's Optuna study: its own name (the SQLite file holds one suite)."""
        return key

    def has_studies(self) -> bool:
        return (self.root / STUDY_FILE).exists()

    def has_records(self) -> bool:
        return any((self.root / "records").glob("*/*.json"))

    def count(self) -> int:
        return sum(1 for _ in (self.root / "records").glob("*/*.json"))

    def saved_suite(self) -> str | None:
        path = self.root / SUITE_FILE
        return path.read_text(encoding="utf-8") if path.exists() else None

    def save_suite(self, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SUITE_FILE).write_text(text, encoding="utf-8")

    def path_for(self, record: TrialRecord) -> Path:
        folder = self.root / "records" / record.cell_id
        if record.phase == "confirm":  # keyed by (trial, seed): a new best trial gets its own confirmations
            return folder / f"confirm-t{record.trial_number:04d}-seed{record.seed:04d}.json"
        return folder / f"trial-{record.trial_number:04d}.json"

    def write(self, record: TrialRecord) -> Path:
        path = self.path_for(record)
        write_text_atomic(path, record.model_dump_json(indent=2))
        return path

    def load_all(self, skip_bad: bool = False) -> list[TrialRecord]:
        """Every record. A record that cannot be read stops it with a message naming the file (and
        every other bad one), unless skip_bad: then they are left out and listed in self.skipped."""
        return self._load(sorted((self.root / "records").glob("*/*.json")), skip_bad)

    def load_cell(self, cell_id: str) -> list[TrialRecord]:
        return self._load(sorted((self.root / "records" / cell_id).glob("*.json")), skip_bad=False)

    def _load(self, paths, skip_bad: bool) -> list[TrialRecord]:
        records, bad = [], []
        for path in paths:
            try:
                records.append(read_record(path))
            except UserError as err:
                bad.extend(err.problems)
        self.skipped = bad
        if bad and not skip_bad:
            hint = "; `harness report --skip-bad` reports the others" if len(paths) > len(bad) else ""
            raise UserError(bad + [Problem(str(self.root), None, "",
                                           f"{len(bad)} of {len(paths)} records cannot be read{hint}")])
        return records
