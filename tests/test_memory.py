"""CPU memory accounting: per-phase peaks from VmHWM, a whole-trial peak that survives the resets,
and agreement with the kernel's own ru_maxrss of the process."""

from __future__ import annotations

import os

import pytest

from harness.measure.memory import PhaseMemory, reset_peak_rss

pytestmark = pytest.mark.skipif(not reset_peak_rss(), reason="the kernel does not allow VmHWM resets here")

MIB = 2**20


def _touch(n_bytes: int) -> bytearray:
    block = bytearray(n_bytes)
    for i in range(0, n_bytes, 4096):  # fault every page in, so it counts in the resident set
        block[i] = 1
    return block


def _in_child(fn) -> tuple[dict, int]:
    """Run fn in a forked process (a fresh peak counter); return its dict and the kernel's ru_maxrss."""
    import json

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, json.dumps(fn()).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = json.loads(f.read())
    _, _, usage = os.wait4(pid, 0)
    return out, usage.ru_maxrss * 1024


def _two_phases(phase_reset: bool) -> dict:
    memory = PhaseMemory("cpu", phase_reset=phase_reset)
    memory.start("big")
    block = _touch(300 * MIB)
    memory.stop("big")
    del block
    memory.start("small")
    small = _touch(10 * MIB)
    memory.stop("small")
    del small
    memory.close()
    return {"peaks": memory.peaks, "peak": memory.peak_bytes, "baseline": memory.baseline_bytes}


@pytest.mark.e2e
def test_phase_peaks_are_separate_and_the_trial_peak_spans_the_resets():
    out, kernel = _in_child(lambda: _two_phases(phase_reset=True))
    big, small = out["peaks"]["big"], out["peaks"]["small"]
    assert big - out["baseline"] >= 290 * MIB  # the 300 MiB block shows in its own phase
    assert small < big - 250 * MIB  # ... and not in the next one, which began after it was freed
    assert out["peak"] >= big  # the whole-trial peak keeps the big phase
    # the reset at the small phase restarted the kernel's counter too: it saw only the small phase
    assert kernel < big - 250 * MIB


@pytest.mark.e2e
def test_without_resets_the_peak_equals_the_kernels_ru_maxrss():
    out, kernel = _in_child(lambda: _two_phases(phase_reset=False))
    assert out["peak"] - out["baseline"] >= 290 * MIB
    assert abs(out["peak"] / kernel - 1) < 0.01


@pytest.mark.e2e
def test_a_trial_does_not_inherit_the_process_earlier_peak():
    """Inline trials share the sweep process: an earlier trial's peak must not become this one's."""

    def earlier_peak_then_trial() -> dict:
        block = _touch(300 * MIB)  # an earlier trial's peak
        del block
        memory = PhaseMemory("cpu")
        memory.start("train")
        small = _touch(10 * MIB)
        memory.stop("train")
        del small
        memory.close()
        return {"peak": memory.peak_bytes, "baseline": memory.baseline_bytes}

    out, _ = _in_child(earlier_peak_then_trial)
    assert out["peak"] - out["baseline"] < 100 * MIB


@pytest.mark.e2e
def test_baseline_leaves_out_the_inherited_model_and_growth_is_near_zero_for_nothing_new():
    """A forked trial starts with the sweep process's base model resident. The baseline is the process
    before any model weights; the train phase's peak above it is what training needs (weights
    included), its growth over the trial's start is what the phase added: ~0 when nothing is new."""

    def trial_in_a_fork() -> dict:
        model = _touch(120 * MIB)  # the base model the sweep process loaded before forking
        memory = PhaseMemory("cpu", inherited_model_bytes=len(model))
        memory.start("train")  # a method that allocates nothing new
        memory.stop("train")
        memory.start("eval")
        activations = _touch(40 * MIB)
        memory.stop("eval")
        del activations
        memory.close()
        return {"train_above": memory.above_baseline("train"), "train_growth": memory.growth("train"),
                "eval_above": memory.above_baseline("eval"), "eval_growth": memory.growth("eval"),
                "start": memory.start_bytes, "baseline": memory.baseline_bytes}

    out, _ = _in_child(trial_in_a_fork)
    assert abs(out["train_growth"]) < 8 * MIB
    assert 112 * MIB <= out["train_above"] <= 130 * MIB  # the weights, and nothing else
    assert 35 * MIB <= out["eval_growth"] <= 48 * MIB
    assert out["eval_above"] - out["train_above"] == pytest.approx(out["eval_growth"] - out["train_growth"], abs=MIB)
    assert out["start"] - out["baseline"] == 120 * MIB


@pytest.mark.e2e
def test_host_load_sees_other_processes_busy_on_every_cpu():
    import multiprocessing as mp
    import time

    from harness.measure.host import HostLoad

    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    busy_load = HostLoad()
    workers = [mp.get_context("fork").Process(target=spin, args=(1.5,)) for _ in range(os.cpu_count() or 1)]
    for w in workers:
        w.start()
    time.sleep(1.2)
    busy = busy_load.read()
    for w in workers:
        w.join()
    assert busy["other_cpu_share"] > 0.6 and busy["cpu_count"] == (os.cpu_count() or 1)


def test_host_load_arithmetic(monkeypatch):
    import harness.measure.host as host

    clock = iter([100.0, 101.0])  # one second of wall time
    busy = iter([10_000, 10_000 + 200])  # 200 jiffies = 2 CPU-seconds busy on the host, all CPUs together
    own = iter([5.0, 5.5])  # half a CPU-second of it was this process
    monkeypatch.setattr(host.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(host, "_busy_jiffies", lambda: next(busy))
    monkeypatch.setattr(host, "_own_seconds", lambda: next(own))
    monkeypatch.setattr(host.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(host.os, "sysconf", lambda name: 100)
    load = host.HostLoad().read()
    assert load["other_cpu_share"] == pytest.approx(1.5 / 2)  # others: 1.5 CPU-seconds of 2 available
    assert host.busy_share(load) > host.BUSY_SHARE


@pytest.mark.e2e
def test_weights_in_a_file_mapping_are_resident_before_the_trial_start_is_read(tmp_path):
    """Weights from safetensors can live in a file mapping, whose pages a forked trial does not
    inherit as resident: unless brought in before the start is read, training counted them twice
    (once on first touch, once through the baseline that subtracts the inherited model)."""
    import os

    import numpy as np
    import torch

    from harness.measure.memory import current_rss_bytes
    from harness.runner.trial import fault_in

    size = 64 * 2**20
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * size)
    mapped = torch.from_numpy(np.memmap(path, dtype=np.float32, mode="c"))  # copy-on-write file mapping
    model = torch.nn.Module()
    model.weight = torch.nn.Parameter(mapped, requires_grad=False)
    float(mapped.sum())  # resident in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        before = current_rss_bytes()
        fault_in(model)
        os.write(write, str(current_rss_bytes() - before).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    grew = int(os.read(read, 64))
    assert grew > 0.8 * size  # the child's start now holds the weights it will train with
