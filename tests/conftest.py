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


# The inner loop (`python -m pytest -m "not e2e"`) stays fast because every test that runs a sweep or
# starts a process (a trial, a server, a browser, the harness command) carries the e2e marker. This
# guard keeps it so: such a test without the marker fails, naming the marker. It is set before the
# test's fixtures (a module fixture that runs a sweep counts too). git and uname, which provenance
# reads, are the commands a unit test may start.
ALLOWED_COMMANDS = {"git", "uname"}
_GUARDED: list[tuple[object, str, object]] = []


def _refuse(nodeid: str, what: str):
    raise AssertionError(f"{nodeid} {what}: mark it @pytest.mark.e2e (the inner loop, -m 'not e2e', runs no "
                         f"sweep and starts no process)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("e2e") is not None:
        return
    import subprocess

    import harness.runner.sweep as sweep

    nodeid, real_popen = item.nodeid, subprocess.Popen.__init__

    def popen(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        command = Path(str(argv[0]).split()[0]).name if argv else ""
        if command not in ALLOWED_COMMANDS:
            _refuse(nodeid, f"starts a process ({command})")
        real_popen(self, args, *rest, **kwargs)

    for holder, name, replacement in ((sweep, "run_sweep", lambda *a, **k: _refuse(nodeid, "runs a sweep")),
                                      (os, "fork", lambda: _refuse(nodeid, "forks a process (a trial)")),
                                      (subprocess.Popen, "__init__", popen)):
        _GUARDED.append((holder, name, getattr(holder, name)))
        setattr(holder, name, replacement)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    while _GUARDED:
        holder, name, original = _GUARDED.pop()
        setattr(holder, name, original)
