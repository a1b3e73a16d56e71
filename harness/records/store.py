"""The results folder: results/<suite>/records/<cell>/trial-NNNN.json, each written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from harness.errors import Problem, UserError
from harness.records.schema import TrialRecord, upgrade


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


class RecordStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.skipped: list[Problem] = []  # records the last load left out (skip_bad)

    @property
    def study_storage_url(self) -> str:
        return f"sqlite:///{(self.root / 'optuna.db').resolve()}"

    def study_name(self, name: str) -> str:
        """A cell's Optuna study: its own name (the SQLite file holds one suite)."""
        return name

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
