"""Speed: step times, synchronized on CUDA and taken after warm-up. The FLOPs model behind MFU is
in flops.py."""

from __future__ import annotations

import statistics
import time


class StepTimer:
    """Wall time of each optimizer step, synchronized on CUDA so queued kernels are counted."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.durations: list[float] = []
        self._t0 = 0.0

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def begin(self) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def end(self) -> None:
        self._sync()
        self.durations.append(time.perf_counter() - self._t0)

    def median_after_warmup(self) -> float:
        """Median step time, leaving out the first steps (allocator growth, kernel selection)."""
        if not self.durations:
            return 0.0
        warmup = min(3, len(self.durations) // 4)
        return statistics.median(self.durations[warmup:])
