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


def test_phase_peaks_are_separate_and_the_trial_peak_spans_the_resets():
    out, kernel = _in_child(lambda: _two_phases(phase_reset=True))
    big, small = out["peaks"]["big"], out["peaks"]["small"]
    assert big - out["baseline"] >= 290 * MIB  # the 300 MiB block shows in its own phase
    assert small < big - 250 * MIB  # ... and not in the next one, which began after it was freed
    assert out["peak"] >= big  # the whole-trial peak keeps the big phase
    # the reset at the small phase restarted the kernel's counter too: it saw only the small phase
    assert kernel < big - 250 * MIB


def test_without_resets_the_peak_equals_the_kernels_ru_maxrss():
    out, kernel = _in_child(lambda: _two_phases(phase_reset=False))
    assert out["peak"] - out["baseline"] >= 290 * MIB
    assert abs(out["peak"] / kernel - 1) < 0.01


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
