"""Trial isolation: a killed trial process or an out-of-memory error is a record, and the sweep goes on."""

from __future__ import annotations

import pytest

import os
import signal
import threading
import tempfile
import time
from pathlib import Path

import psutil

from harness.cli import main
from harness.records.store import FileRecordStore


def _run(suite, tmp_path):
    return main(["run", str(suite), "--quiet", "--results", str(tmp_path / "results"),
                 "--reports", str(tmp_path / "reports")])


@pytest.mark.e2e
def test_sigkill_mid_training_is_recorded_as_crashed(tiny_suite, tmp_path):
    # One long cell (the victim) then a short one that must still run after the kill.
    suite = tiny_suite(methods=("  - name: bitfit\n    label: victim", "lora"), trials=1, steps=400)
    suite.write_text(suite.read_text() + "runner: {isolation: process}\n")
    killed: list[int] = []
    scratch = lambda: set(Path(tempfile.gettempdir()).glob("harness-trial-scratch-*"))  # noqa: E731
    before = scratch()

    def killer() -> None:
        me = psutil.Process()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            # this process -> the spawned sweep process -> the trial process (forked: the same command
            # line as its sweep process, unlike a helper the sweep process runs)
            trials = []
            for sweep in me.children():
                try:
                    trials += [t for t in sweep.children() if t.cmdline() == sweep.cmdline()]
                except psutil.Error:  # a process that ended while we looked
                    continue
            for child in trials:
                try:
                    alive_s = time.time() - child.create_time()
                except psutil.NoSuchProcess:
                    continue
                if alive_s > 1.0:  # well inside the 400-step training loop
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    assert _run(suite, tmp_path) == 1  # the victim's cell has no complete trial
    thread.join(timeout=5)
    assert killed, "no trial process was found to kill"
    records = {r.method: r for r in FileRecordStore(tmp_path / "results" / "tiny").load_all()}
    assert records["victim"].status == "crashed"
    assert "SIGKILL" in records["victim"].reason
    assert records["lora"].status == "complete"
    assert scratch() == before  # the killed trial's temp files (its retention snapshot) went with it


@pytest.mark.e2e
def test_out_of_memory_is_recorded_with_the_batch_size(tiny_suite, tmp_path, monkeypatch):
    import torch
    import transformers

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    # Inline isolation runs the same trial code in this process, so the patch reaches it.
    monkeypatch.setattr(transformers.Trainer, "train", out_of_memory)
    suite = tiny_suite(methods=("bitfit",), trials=1, steps=4, extra="runner: {isolation: inline}\n")
    assert _run(suite, tmp_path) == 1
    [record] = FileRecordStore(tmp_path / "results" / "tiny").load_all()
    assert record.status == "oom"
    assert "out of memory in the train phase at micro-batch size 16" in record.reason
    assert "Tried to allocate 2.00 GiB" in record.reason
