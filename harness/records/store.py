"""The results folder: results/<suite>/records/<cell>/trial-NNNN.json, each written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from harness.errors import UserError
from harness.records.schema import SCHEMA_VERSION, TrialRecord


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

    @property
    def study_storage_url(self) -> str:
        return f"sqlite:///{(self.root / 'optuna.db').resolve()}"

    def path_for(self, record: TrialRecord) -> Path:
        folder = self.root / "records" / record.cell_id
        if record.phase == "confirm":
            return folder / f"confirm-seed{record.seed:04d}.json"
        return folder / f"trial-{record.trial_number:04d}.json"

    def write(self, record: TrialRecord) -> Path:
        path = self.path_for(record)
        write_text_atomic(path, record.model_dump_json(indent=2))
        return path

    def load_all(self) -> list[TrialRecord]:
        return self._load(sorted((self.root / "records").glob("*/*.json")))

    def load_cell(self, cell_id: str) -> list[TrialRecord]:
        return self._load(sorted((self.root / "records" / cell_id).glob("*.json")))

    def _load(self, paths) -> list[TrialRecord]:
        records = []
        for path in paths:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema_version") != SCHEMA_VERSION:
                raise UserError(f"{path}: record schema version {data.get('schema_version')} "
                                 f"is not {SCHEMA_VERSION}; this harness cannot read it")
            records.append(TrialRecord.model_validate(data))
        return records
