"""Peak memory per phase. On CPU: the trial process's peak resident set (VmHWM), reset at each
phase start through /proc/self/clear_refs. On CUDA: the torch allocator's peak allocated and
reserved bytes, reset per phase. psutil/NVML give current values, not a resettable peak, so the
phase peaks are read from the kernel and the allocator directly."""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss_bytes() -> int:
    rss = _status_kb("VmRSS")
    if rss is None:
        import psutil

        rss = psutil.Process().memory_info().rss
    return rss


def peak_rss_bytes() -> int:
    peak = _status_kb("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak


def reset_peak_rss() -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0). False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PhaseMemory:
    """Peak memory of each named phase of a trial, from the best source the device has."""

    def __init__(self, device: str):
        self.device = device
        self.peaks: dict[str, int] = {}
        self.baseline_bytes = 0
        self._resettable = True
        if device == "cuda":
            import torch

            torch.cuda.init()
            self.baseline_bytes = torch.cuda.memory_reserved()
            self.source = "torch.cuda.max_memory_reserved (allocator), minus the baseline after CUDA init"
        else:
            self._resettable = reset_peak_rss()
            self.baseline_bytes = current_rss_bytes()
            self.source = ("VmHWM (peak RSS) of the trial process, per phase" if self._resettable
                           else "VmHWM (peak RSS) of the trial process since it started")

    def start(self, phase: str) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif self._resettable:
            reset_peak_rss()

    def stop(self, phase: str) -> int:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            peak = max(torch.cuda.max_memory_reserved() - self.baseline_bytes, 0)
        else:
            peak = peak_rss_bytes()
        self.peaks[phase] = peak
        return peak

    @property
    def peak_bytes(self) -> int:
        return max(self.peaks.values(), default=0)
