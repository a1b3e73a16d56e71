"""Speed: step times (synchronized, after warm-up), and the FLOPs model behind the MFU estimate.

FLOPs per trained token (documented formula, after Kaplan et al. and nanoGPT's 6N + 12LdT):
    forward                2N       + 4·L·d·T   (matmuls over N non-embedding weights; QK^T and AV)
    backward, activations  2N       + 8·L·d·T   (attention matmuls need grads for both inputs)
    backward, weights      2·N_trainable        (only weights that train get gradients)
    total = 4N + 2·N_trainable + 12·L·d·T
so full fine-tuning gives 6N + 12LdT, and a frozen base with few trainable weights about 4N + 12LdT.
N excludes embedding tables (lookups, not matmuls). T is the mean sequence length trained on."""

from __future__ import annotations

import statistics
import time

# Dense bf16/fp16 tensor-core peak FLOP/s by GPU name substring (vendor datasheets, no sparsity).
PEAK_FLOPS = {"H200": 989e12, "H100 SXM": 989e12, "H100 PCIe": 756e12, "H100": 989e12,
              "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12, "RTX 4090": 165e12}


def flops_per_token(n_params: int, n_trainable: int, n_layers: int, d_model: int, seq_len: float) -> float:
    return 4 * n_params + 2 * n_trainable + 12 * n_layers * d_model * seq_len


def non_embedding_params(model) -> int:
    import torch

    embedding = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)
                    for p in m.parameters(recurse=False))
    return sum(p.numel() for p in model.parameters()) - embedding


def peak_flops(gpu_name: str | None) -> float | None:
    if not gpu_name:
        return None
    for key, value in PEAK_FLOPS.items():
        if key in gpu_name:
            return value
    return None


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
