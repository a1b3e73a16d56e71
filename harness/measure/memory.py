"""Peak memory per phase. On CPU: the trial process's peak resident set (VmHWM), reset at each
phase start through /proc/self/clear_refs. On CUDA: the torch allocator's peak allocated and
reserved bytes, reset per phase. psutil/NVML give current values, not a resettable peak, so the
phase peaks are read from the kernel and the allocator directly.

The reset also resets what the kernel later reports as the process's ru_maxrss (wait4,
/usr/bin/time): after it, they cover only the time since the last phase began. So on CPU the
whole-life peak is kept here, as the largest VmHWM read before each reset, at each phase end and
at close; it is what ru_maxrss would have said without the resets (phase_reset=False checks it)."""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def model_bytes(model) -> int:
    """Bytes of a model's weights and buffers as they are held (their dtypes)."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


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


def release_free_heap() -> None:
    """Hand the heap memory glibc keeps after frees back to the kernel (malloc_trim), so a phase's
    resident peak starts from what is live: without it, a quantized method's full-precision load,
    freed before training, stayed resident and was counted as training memory. No-op off glibc."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0). False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PhaseMemory:
    """Peak memory of each named phase of a trial, from the best source the device has."""

    def __init__(self, device: str, nvml_period_s: float = 0.005, phase_reset: bool = True,
                 inherited_model_bytes: int = 0):
        """inherited_model_bytes: CPU, the base model's weights a forked trial process starts with
        (loaded once by the sweep process): the baseline leaves them out, so that on every device
        "above the baseline" is weights + gradients + optimizer states + activations."""
        self.device = device
        self.peaks: dict[str, int] = {}
        self.lifetime_peak = 0  # CPU: the process's peak RSS since it started, across the resets
        self.gpu: dict[str, float] = {}
        self.baseline_bytes = 0  # the process before any model weights (CPU: runtime; GPU: CUDA context)
        self.start_bytes = 0  # the process at the trial's start (CPU: with the inherited base model)
        self._resettable = True
        self.sampler = None
        if device == "cuda":
            import torch

            torch.cuda.init()  # the CUDA context exists before the baseline is taken
            torch.cuda.synchronize()
            self.baseline_bytes = self.start_bytes = torch.cuda.memory_reserved()
            self.source = ("torch.cuda.max_memory_reserved per phase minus the baseline after CUDA init; "
                           "NVML device/process used memory sampled beside it")
            from harness.measure.nvml import NvmlSampler

            self.sampler = NvmlSampler(torch.cuda.current_device(), nvml_period_s)
            self.sampler.start()
        else:
            # The first reset drops what the process held before the trial began: in inline mode
            # that is the sweep process's own history, earlier trials included. The free heap the
            # process inherited goes back to the kernel first: each phase start hands it back too,
            # and a start that still held it would sit above every phase's peak by as much.
            release_free_heap()
            self._resettable = phase_reset and reset_peak_rss()
            self.start_bytes = current_rss_bytes()
            self.baseline_bytes = max(self.start_bytes - inherited_model_bytes, 0)
            self.source = ("VmHWM (peak RSS) of the trial process, per phase; the whole-trial peak spans the "
                           "resets" if self._resettable else
                           "VmHWM (peak RSS) of the trial process since it started, read at each phase end")

    def start(self, phase: str) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            if self.sampler is not None:
                self.sampler.phase = phase
        elif self._resettable:
            release_free_heap()
            self._reset()

    def _reset(self) -> None:
        self.lifetime_peak = max(self.lifetime_peak, peak_rss_bytes())
        reset_peak_rss()

    def stop(self, phase: str) -> int:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            if self.sampler is not None:
                self.sampler.phase = None
            peak = torch.cuda.max_memory_reserved()
            self.gpu[f"{phase}_peak_allocated_bytes"] = float(torch.cuda.max_memory_allocated())
            self.gpu[f"{phase}_peak_reserved_bytes"] = float(torch.cuda.max_memory_reserved())
        else:
            peak = peak_rss_bytes()
            self.lifetime_peak = max(self.lifetime_peak, peak)
        self.peaks[phase] = peak
        return peak

    def close(self) -> None:
        if self.device != "cuda":
            self.lifetime_peak = max(self.lifetime_peak, peak_rss_bytes())
        if self.sampler is not None:
            self.sampler.stop()
            self.gpu.update({k: float(v) for k, v in self.sampler.summary().items()})

    @property
    def peak_bytes(self) -> int:
        """The whole trial's absolute peak. CUDA: the largest phase peak of reserved memory. CPU: the
        trial process's whole-life peak RSS (phases and the moments between them)."""
        if self.device == "cuda":
            return max(self.peaks.values(), default=0)
        return self.lifetime_peak  # every phase end updates it, so it covers the phase peaks

    def above_baseline(self, phase: str) -> int | None:
        """A phase's peak above the process before any model weights: what the phase needs."""
        return max(self.peaks[phase] - self.baseline_bytes, 0) if phase in self.peaks else None

    def growth(self, phase: str) -> int | None:
        """A phase's peak above the trial's start: what it added to the process as the trial began."""
        return self.peaks[phase] - self.start_bytes if phase in self.peaks else None
