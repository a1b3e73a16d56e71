"""GPU memory and energy from NVML (nvidia-ml-py): a background sampler of the device's used memory,
this process's used memory and the torch allocator's reserved bytes, every few milliseconds, plus
the energy counter. torch's own peaks miss the CUDA context and other processes; NVML sees them."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class Samples:
    phase: list[str | None] = field(default_factory=list)  # the trial phase each sample fell in
    device_used: list[int] = field(default_factory=list)
    process_used: list[int] = field(default_factory=list)
    torch_reserved: list[int] = field(default_factory=list)


def nvml_handle(cuda_index: int):
    """The NVML handle of CUDA device `cuda_index` as this process sees it: NVML counts physical GPUs,
    CUDA counts those CUDA_VISIBLE_DEVICES lists (a worker's lease, a rank's device), by index or UUID."""
    import os

    import pynvml

    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if cuda_index < len(visible):
        entry = visible[cuda_index]
        if entry.isdigit():
            return pynvml.nvmlDeviceGetHandleByIndex(int(entry))
        return pynvml.nvmlDeviceGetHandleByUUID(entry)
    return pynvml.nvmlDeviceGetHandleByIndex(cuda_index)


class NvmlSampler:
    """Samples in a daemon thread between start() and stop(); one instance per trial process."""

    def __init__(self, device_index: int = 0, period_s: float = 0.005):
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = nvml_handle(device_index)
        self.period_s = period_s
        self.pid = os.getpid()
        self.samples = Samples()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.phase: str | None = None  # set by PhaseMemory as phases start and stop
        self.baseline_device_used = self._device_used()

    def _device_used(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def _process_used(self) -> int:
        try:
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except self.nvml.NVMLError:
            return 0
        return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid == self.pid)

    def energy_mj(self) -> int | None:
        """Millijoules since the driver loaded (Volta and newer); None where the GPU has no counter."""
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self.nvml.NVMLError:
            return None

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            self.samples.phase.append(self.phase)
            self.samples.device_used.append(self._device_used())
            self.samples.process_used.append(self._process_used())
            self.samples.torch_reserved.append(int(torch.cuda.memory_reserved()))
            time.sleep(self.period_s)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> Samples:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples

    def summary(self) -> dict[str, int | float]:
        """Peaks over the whole trial and per phase ("train_nvml_peak_device_used_bytes", ...). The
        reserved average and p99 are the train phase's, as peft's benchmark reports them (the whole
        trial's where no sample fell in training)."""
        s = self.samples
        if not s.device_used:
            return {}
        out: dict[str, int | float] = {"samples": len(s.device_used), **self._stats(range(len(s.device_used)))}
        for phase in dict.fromkeys(p for p in s.phase if p):
            idx = [i for i, p in enumerate(s.phase) if p == phase]
            out.update({f"{phase}_{key}": value for key, value in self._stats(idx).items()})
        if "train_reserved_avg_bytes" in out:
            out["reserved_avg_bytes"] = out["train_reserved_avg_bytes"]
            out["reserved_p99_bytes"] = out["train_reserved_p99_bytes"]
        return out

    def _stats(self, idx) -> dict[str, int | float]:
        s = self.samples
        reserved = [s.torch_reserved[i] for i in idx]
        return {
            "nvml_peak_device_used_bytes": max(s.device_used[i] for i in idx) - self.baseline_device_used,
            "nvml_peak_process_used_bytes": max((s.process_used[i] for i in idx), default=0),
            "reserved_avg_bytes": sum(reserved) / len(reserved),
            "reserved_p99_bytes": percentile(reserved, 99),
        }


class EnergyMeter:
    """Joules of named spans (validation, test) read from the NVML energy counter, so training's
    energy can be given without them; does nothing where there is no counter (CPUs)."""

    def __init__(self, sampler: "NvmlSampler | None"):
        self.read = sampler.energy_mj if sampler is not None else (lambda: None)
        self.joules: dict[str, float] = {}

    def span(self, name: str):
        from contextlib import contextmanager

        @contextmanager
        def measured():
            start = self.read()
            try:
                yield
            finally:
                end = self.read()
                if start is not None and end is not None:
                    self.joules[name] = self.joules.get(name, 0.0) + (end - start) / 1000.0

        return measured()
