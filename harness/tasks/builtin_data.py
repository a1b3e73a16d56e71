"""Built-in data sets this project wrote itself (harness/data/*.jsonl, made by tools/make_builtin_data.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.registry import Registry

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class BuiltinData:
    name: str
    kind: str  # task family it suits
    summary: str

    @property
    def path(self) -> Path:
        return DATA_DIR / f"{self.name}.jsonl"

    def columns(self) -> list[str]:
        with open(self.path, encoding="utf-8") as f:
            return [c for c in json.loads(f.readline()) if c != "split"]


BUILTIN_DATA: Registry[BuiltinData] = Registry("builtin data set")
for _entry in (
    BuiltinData("sentiment", "classification",
                "700 composed review sentences (positive/negative), split 400/100/200, balanced"),
):
    BUILTIN_DATA.register(_entry.name, _entry)


@lru_cache(maxsize=None)
def all_builtin_texts() -> tuple[str, ...]:
    """Every text field of every built-in data set (the tiny models' tokenizer vocabulary)."""
    texts = []
    for name in BUILTIN_DATA:
        with open(BUILTIN_DATA.get(name).path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.extend(str(v) for k, v in row.items() if k != "split")
    return tuple(texts)
