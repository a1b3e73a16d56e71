"""The bytes fake tensors cannot stand for, by arithmetic: bitsandbytes' packed weights with their
quantization constants, and 8-bit optimizer states. Each number cites where it comes from."""

from __future__ import annotations

from dataclasses import dataclass

# bitsandbytes 4-bit (NF4/FP4): two weights per byte, one absmax per block of 64 weights; with double
# quantization the absmax are 8-bit with a float32 absmax per 256 of them, else each absmax is float32.
BLOCK_4BIT = 64
DOUBLE_QUANT_GROUP = 256
# bitsandbytes' 8-bit optimizers: one byte per state, a float32 absmax per block of 256 (blockwise),
# and parameters under 4,096 elements keep 32-bit states (min_8bit_size).
OPT_8BIT_BLOCK = 256
OPT_8BIT_MIN_SIZE = 4096
# the CUDA context (cuBLAS/cuDNN handles, kernels) a process holds before its first tensor: about
# 0.5 GiB with torch 2.x lazy module loading; not in torch's allocated bytes, but in what fits.
CUDA_CONTEXT_BYTES = 512 * 2**20


def quantized_weight_bytes(numel: int, bits: int, double_quant: bool, out_features: int) -> tuple[int, int]:
    """(packed weight bytes, quantization-constant bytes) of one bitsandbytes Linear."""
    if bits == 4:
        blocks = -(-numel // BLOCK_4BIT)
        if double_quant:
            constants = blocks + 8 * -(-blocks // DOUBLE_QUANT_GROUP)  # uint8 absmax + fp32 absmax/offset per group
        else:
            constants = 4 * blocks
        return -(-numel // 2), constants
    return numel, 4 * out_features  # LLM.int8: int8 weights, a float32 scale per output row (SCB)


def optimizer_bytes(optim: str, trainable: list[tuple[str, int, str]], simulated: int) -> tuple[int, bool]:
    """(optimizer-state bytes, paged?) for a transformers optimizer name. 32-bit AdamW: what the
    simulation measured (two states in each parameter's dtype); 8-bit: recounted."""
    paged = optim.startswith("paged_")
    if "8bit" not in optim:
        return simulated, paged
    total = 0
    for _, numel, _dtype in trainable:
        if numel < OPT_8BIT_MIN_SIZE:
            total += 2 * 4 * numel
        else:
            total += 2 * (numel + 4 * -(-numel // OPT_8BIT_BLOCK))
    return total, paged


_CPU_PROBE = """
import sys, torch
from transformers import BertConfig, BertForSequenceClassification
from harness.estimate.simulate import PeakTracker
from harness.measure.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
torch.manual_seed(0)
seq = int(sys.argv[1])
model = BertForSequenceClassification(BertConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4,
                                                 num_attention_heads=4, intermediate_size=1024))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4)
ids = torch.randint(0, 8000, (8, seq))
batch = {"input_ids": ids, "labels": torch.zeros(8, dtype=torch.long)}
tracker = PeakTracker(params, opt)
for t in (*model.parameters(), *model.buffers()):
    tracker.add(t)
static = tracker.total
reset_peak_rss()
start = current_rss_bytes()
with tracker.mode():
    for _ in range(3):
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
print(tracker.peak_total - static, peak_rss_bytes() - start)
"""
PROBE_LENGTHS = (32, 128, 384)


@dataclass(frozen=True)
class CpuAllocator:
    """Resident growth of a CPU training step = runtime_bytes + factor x the tensors' peak growth,
    fitted on this host (least squares over a synthetic BERT's steps at three lengths, each in a
    fresh process): the kernels' code pages and one-time buffers a first step adds, and what glibc
    and the math libraries keep beyond live tensors. The CPU counterpart of the CUDA caching
    allocator's reserve."""

    runtime_bytes: int
    factor: float
    points: tuple[tuple[int, int], ...]  # (tensor growth, resident growth) per probe


_PROBED: dict[str, CpuAllocator | None] = {}


def cpu_allocator() -> CpuAllocator | None:
    """The host's CPU allocator model, probed once per process (~8 s) and kept in the harness cache
    per host, CPU and torch version; None where it cannot be probed."""
    if "cpu" in _PROBED:
        return _PROBED["cpu"]
    import json
    import platform
    import subprocess
    import sys

    import torch

    from harness.models import cache_dir

    key = f"{platform.node()}-{platform.processor() or platform.machine()}-{torch.__version__}".replace("/", "_")
    path = cache_dir() / "cpu-allocator" / f"{key}.json"
    try:
        _PROBED["cpu"] = CpuAllocator(**{**json.loads(path.read_text()), "points": ()})
        return _PROBED["cpu"]
    except (OSError, ValueError, TypeError):
        pass
    points = []
    try:
        for seq in PROBE_LENGTHS:
            out = subprocess.run([sys.executable, "-c", _CPU_PROBE, str(seq)], capture_output=True, text=True,
                                 timeout=300, check=True)
            tensors, resident = (int(v) for v in out.stdout.strip().splitlines()[-1].split())
            points.append((tensors, resident))
    except (subprocess.SubprocessError, OSError, ValueError):
        _PROBED["cpu"] = None
        return None
    n = len(points)
    mean_x, mean_y = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    var = sum((p[0] - mean_x) ** 2 for p in points)
    factor = max(sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / var, 1.0) if var else 1.0
    model = CpuAllocator(max(int(mean_y - factor * mean_x), 0), round(factor, 4), tuple(points))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"runtime_bytes": model.runtime_bytes, "factor": model.factor}))
    except OSError:
        pass
    _PROBED["cpu"] = model
    return model
