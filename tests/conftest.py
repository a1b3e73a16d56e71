"""Shared fixtures: an isolated cache for built-in tiny models, offline hub flags, suite writers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _harness_cache(tmp_path_factory):
    os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))


TINY_SUITE = """\
name: {name}
models:
  - source: builtin:tiny-bert
    max_length: 32
tasks:
  - name: sentiment
    kind: classification
    data: {{builtin: sentiment, train_size: 160, test_size: 80}}
methods:
{methods}
search: {{trials_per_cell: {trials}, seed: 0, strategy: none}}
training: {{max_steps: {steps}, batch_size: 16, eval_batch_size: 80}}
references: false
"""


@pytest.fixture
def write_suite(tmp_path):
    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def tiny_suite(write_suite):
    def make(methods=("lora", "bitfit"), trials=2, steps=12, name="tiny", extra="") -> Path:
        body = "\n".join(m if m.startswith("  - ") else f"  - name: {m}" for m in methods)
        return write_suite(TINY_SUITE.format(name=name, methods=body, trials=trials, steps=steps) + extra)

    return make
