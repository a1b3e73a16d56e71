"""The GPU measurement code, run on a CPU against a stand-in NVML: phase attribution of the NVML
samples, the train-phase reserved average and p99, and the energy and cost arithmetic. The real
NVML and CUDA allocator are exercised by benchmarks/gpu_check.sh on a GPU."""

from __future__ import annotations

import os
import sys
import time
import types

import pytest

from harness.measure.nvml import NvmlSampler, percentile

GIB = 2**30


class FakeNvml(types.ModuleType):
    """Just enough of pynvml: memory follows `used`, one process entry for this pid, an energy counter."""

    class NVMLError(Exception):
        pass

    def __init__(self):
        super().__init__("pynvml")
        self.used = 1 * GIB
        self.process = 0
        self.energy_mj = 5_000_000

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(used=self.used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=self.process),
                types.SimpleNamespace(pid=os.getpid() + 1, usedGpuMemory=40 * GIB)]  # someone else's

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.energy_mj


@pytest.fixture
def fake_gpu(monkeypatch):
    import torch

    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    reserved = {"bytes": 0}
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a, **k: reserved["bytes"])
    return nvml, reserved


def _hold(sampler: NvmlSampler, n: int) -> None:
    """Wait until the sampler has taken n more samples."""
    target = len(sampler.samples.device_used) + n
    deadline = time.monotonic() + 5
    while len(sampler.samples.device_used) < target and time.monotonic() < deadline:
        time.sleep(0.001)


def _enter(sampler: NvmlSampler, phase, nvml, reserved, used: int, process: int, res: int, n: int) -> None:
    """Change the stand-in GPU's figures between phases, with no sample straddling the change."""
    sampler.phase = None
    _hold(sampler, 2)
    nvml.used, nvml.process, reserved["bytes"] = used, process, res
    _hold(sampler, 2)
    sampler.phase = phase
    _hold(sampler, n)


def test_nvml_samples_are_attributed_to_phases(fake_gpu):
    nvml, reserved = fake_gpu
    sampler = NvmlSampler(0, period_s=0.001)  # baseline: 1 GiB used before the trial
    sampler.start()
    _enter(sampler, "load", nvml, reserved, 3 * GIB, 2 * GIB, 1 * GIB, 5)
    _enter(sampler, "train", nvml, reserved, 9 * GIB, 8 * GIB, 6 * GIB, 20)
    _enter(sampler, "eval", nvml, reserved, 5 * GIB, 4 * GIB, 3 * GIB, 5)
    sampler.phase = None
    sampler.stop()
    out = sampler.summary()
    assert out["load_nvml_peak_device_used_bytes"] == 2 * GIB  # minus the 1 GiB baseline
    assert out["train_nvml_peak_device_used_bytes"] == 8 * GIB == out["nvml_peak_device_used_bytes"]
    assert out["eval_nvml_peak_process_used_bytes"] == 4 * GIB  # only this process's entry counts
    assert out["train_nvml_peak_process_used_bytes"] == 8 * GIB
    # peft's benchmark reports reserved memory during training: the train phase's samples only
    assert out["reserved_avg_bytes"] == out["train_reserved_avg_bytes"] == 6 * GIB
    assert out["reserved_p99_bytes"] == 6 * GIB
    assert out["samples"] >= 30
    assert sampler.energy_mj() == 5_000_000


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 99) == 99 and percentile(values, 100) == 100 and percentile(values, 50) == 50
    assert percentile([7.0], 99) == 7.0


def test_energy_and_cost_from_the_counter():
    from harness.runner.trial import _energy

    energy = _energy({"train": 450.0}, tokens=90_000, train_s=1800.0, price=4.0, device="cuda")
    assert energy.train_joules == pytest.approx(450.0)
    assert energy.joules_per_1k_tokens == pytest.approx(5.0)
    assert energy.cost_usd == pytest.approx(2.0)  # half an hour at $4 per GPU-hour
    assert "nvmlDeviceGetTotalEnergyConsumption" in energy.source
    none = _energy({}, tokens=90_000, train_s=1800.0, price=None, device="cpu")
    assert none.train_joules is None and none.cost_usd is None


def test_training_energy_leaves_out_validation_and_test_is_apart():
    from harness.measure.nvml import EnergyMeter
    from harness.runner.trial import _energy

    class Counter:  # a stand-in NVML energy counter: millijoules since the driver loaded
        def __init__(self):
            self.mj = 1_000_000

        def energy_mj(self):
            return self.mj

    counter = Counter()
    meter = EnergyMeter(counter)
    with meter.span("train"):
        counter.mj += 50_000  # 50 J of training steps
        with meter.span("validation"):
            counter.mj += 30_000  # 30 J of validation inside the loop
        counter.mj += 20_000  # 20 J more training
    with meter.span("eval"):
        counter.mj += 40_000
    energy = _energy(meter.joules, tokens=10_000, train_s=10.0, price=2.0, device="cuda")
    assert energy.train_joules == pytest.approx(70.0)
    assert energy.validation_joules == pytest.approx(30.0) and energy.eval_joules == pytest.approx(40.0)
    assert energy.joules_per_1k_tokens == pytest.approx(7.0)
    assert energy.cost_usd == pytest.approx(2.0 * 10 / 3600)
    assert EnergyMeter(None).joules == {}  # no counter (a CPU): nothing is made up
