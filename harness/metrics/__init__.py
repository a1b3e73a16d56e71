"""Offline metric modules for `evaluate.load(path)`: evaluate.load('rouge') by name fetches the
module's code from the hub at run time, which fails without network; these load from disk."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def load(name: str):
    import evaluate

    return evaluate.load(str(HERE / name))
