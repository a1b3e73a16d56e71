"""FLOPs per trained token from the model's real shapes, and the peak it is measured against (MFU).

Per position the model processes (Kaplan et al. / nanoGPT's 6N + 12LdT, each part counted from the
modules themselves):
    forward                 2 x (in x out) of every matmul module     + 4 x L x d x T   (QK^T and AV)
    backward, activations   2 x (in x out) of every matmul module the gradient passes through
                            + 8 x L_reached x d x T
    backward, weights       2 x (in x out) of every matmul weight that trains
- matmul modules are the model's Linear layers, counted at their logical in x out size (a 4-bit
  weight's packed storage holds half as many elements), the LM head included whenever the task
  computes logits over the vocabulary, tied to the embeddings or not; embedding lookups are not
  matmuls;
- the gradient passes through the transformer blocks from the first one holding a trained
  parameter upwards (all of them when the embeddings or a soft prompt train; the top k for
  top_layers); in that first block, the projections reading the block's input (q/k/v) pass none
  back, unless a parameter before them (the block's input norm) trains;
- an encoder's pooler and classifier read the first position of each sequence only (a decoder's
  classification `score` runs on every position, as transformers computes it);
- T is the mean sequence length attended; soft prompts add their virtual tokens to every position
  count, and the result is divided back to per data token.
`flop_check` measures the same quantity with PyTorch's own counter (FlopCounterMode) on one real
training step, for tests and benchmarks/flops_check.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

PER_SEQUENCE = re.compile(r"(^|\.)(pooler|classifier)(\.|$)")  # BERT/RoBERTa: the [CLS] position only
# the projections that read a block's input; an adapter's second stage (lora_B) reads the first's output
INPUT_PROJECTION = re.compile(r"(^|\.)(q_proj|k_proj|v_proj|query|key|value|qkv_proj|c_attn|Wqkv|W_pack)(\.|$)")
SECOND_STAGE = re.compile(r"\.lora_B(\.|$)")

# Dense (no sparsity) peak FLOP/s by GPU name substring and dtype, from the vendors' datasheets.
# fp32 is plain FP32 (not TF32); tf32 is what torch uses for float32 matmuls with allow_tf32.
PEAKS = {
    "H200": {"bfloat16": 989e12, "float16": 989e12, "tf32": 494e12, "float32": 67e12},
    "H100 PCIe": {"bfloat16": 756e12, "float16": 756e12, "tf32": 378e12, "float32": 51e12},
    "H100": {"bfloat16": 989e12, "float16": 989e12, "tf32": 494e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float16": 312e12, "tf32": 156e12, "float32": 19.5e12},
    "L40S": {"bfloat16": 362e12, "float16": 362e12, "tf32": 183e12, "float32": 91.6e12},
    "A10G": {"bfloat16": 125e12, "float16": 125e12, "tf32": 62.5e12, "float32": 31.2e12},
    "L4": {"bfloat16": 121e12, "float16": 121e12, "tf32": 60e12, "float32": 30.3e12},
    "RTX 4090": {"bfloat16": 165e12, "float16": 165e12, "tf32": 82.6e12, "float32": 82.6e12},
}


@dataclass(frozen=True)
class FlopBreakdown:
    forward: float
    backward_activations: float
    backward_weights: float
    positions_per_token: float  # > 1 where soft prompts add virtual tokens

    @property
    def per_token(self) -> float:
        return (self.forward + self.backward_activations + self.backward_weights) * self.positions_per_token


def _matmul_modules(model):
    """(name, in, out, trains) of every matmul module, at its logical size."""
    import torch

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        Conv1D = ()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            yield name, module.in_features, module.out_features, module.weight.requires_grad
        elif Conv1D and isinstance(module, Conv1D):  # GPT-2's transposed Linear
            rows, cols = module.weight.shape
            yield name, rows, cols, module.weight.requires_grad


def _blocks(model):
    """(prefix of the block stack, number of blocks): the longest ModuleList."""
    import torch

    lists = [(n, len(m)) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    return max(lists, key=lambda item: item[1]) if lists else ("", 0)


def _block_of(name: str, stack: str, n_blocks: int) -> int:
    """-1 before the stack (embeddings), the block index inside it, n_blocks after it (heads)."""
    if stack and name.startswith(stack + "."):
        return int(name[len(stack) + 1:].split(".")[0])
    if not stack:
        return 0
    return -1 if _before(name, stack) else n_blocks


def _before(name: str, stack: str) -> bool:
    return "embed" in name.lower() or "prompt_encoder" in name or "wte" in name or "wpe" in name


def _after_attention_input(name: str) -> bool:
    """A parameter that sits after the block's input projections (attention output, FFN, later norms)."""
    return not re.search(r"(input_layernorm|ln_1|norm1)(\.|$)", name)


def _attention_width(config) -> int:
    heads = getattr(config, "num_attention_heads", None)
    head_dim = getattr(config, "head_dim", None)
    if heads and head_dim:
        return int(heads * head_dim)
    return int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 0)


def virtual_tokens(model) -> int:
    """Soft-prompt positions peft prepends to every sequence (0 without prompt learning)."""
    config = getattr(model, "active_peft_config", None)
    if getattr(config, "is_prompt_learning", False):
        return int(getattr(config, "num_virtual_tokens", 0) or 0)
    return 0


def flops_per_token(model, seq_len: float) -> FlopBreakdown:
    """FLOPs of one training step per data token of mean length seq_len (see the module's docstring)."""
    config = getattr(model, "config", None)
    stack, n_blocks = _blocks(model)
    modules = list(_matmul_modules(model))
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    earliest = min((_block_of(n, stack, n_blocks) for n in trained), default=n_blocks + 1)
    # in the earliest block, does anything train before its input projections (an input norm)?
    first_block = [n for n in trained if 0 <= earliest < n_blocks and _block_of(n, stack, n_blocks) == earliest]
    input_side_trains = any(not INPUT_PROJECTION.search(n) and not _after_attention_input(n) for n in first_block)
    virtual = virtual_tokens(model)
    positions = seq_len + virtual
    forward = backward_act = backward_w = 0.0
    for name, n_in, n_out, trains in modules:
        # an encoder's pooler and classifier see one position per sequence, not every position
        matmul = 2.0 * n_in * n_out / (positions if PER_SEQUENCE.search(name) else 1.0)
        forward += matmul
        block = _block_of(name, stack, n_blocks)
        reached = block > earliest or (block == earliest and (
            input_side_trains or not INPUT_PROJECTION.search(name) or SECOND_STAGE.search(name)))
        if reached and earliest <= n_blocks:
            backward_act += matmul
        if trains:
            backward_w += matmul
    d = _attention_width(config)
    layers = int(getattr(config, "num_hidden_layers", 0) or n_blocks)
    reached = max(0, layers - max(earliest, 0)) if earliest <= n_blocks else 0
    forward += 4.0 * layers * d * positions
    backward_act += 8.0 * reached * d * positions
    return FlopBreakdown(forward, backward_act, backward_w, positions / seq_len if seq_len else 1.0)


def peak_devices(device: str, ranks: int) -> int:
    """How many devices' peak a trial over `ranks` ranks has: a GPU rank has a device of its own; CPU
    ranks share the one host's cores, whose peak peak_flops already is."""
    return ranks if device != "cpu" else 1


def peak_flops(device: str, gpu_name: str | None, dtype: str) -> tuple[float | None, str]:
    """(peak FLOP/s of this device at this dtype, where the number comes from). On a GPU: the
    datasheet's dense peak for the dtype (float32 matmuls counted at TF32 where torch allows it);
    on a CPU: a float32 matmul timed on the spot (see cpu_matmul_peak)."""
    if device == "cuda":
        for key, peaks in PEAKS.items():
            if gpu_name and key in gpu_name:
                kind = dtype
                if dtype == "float32":
                    import torch

                    kind = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "float32"
                return peaks.get(kind), f"{key} datasheet, dense {kind}"
        return None, f"no datasheet peak known for {gpu_name!r}"
    peak = cpu_matmul_peak(dtype)
    if peak is None:
        return None, f"the CPU {dtype} matmul peak could not be timed here"
    return peak, f"CPU {dtype} matmul (2048 x 2048) timed on this host: {peak / 1e9:.0f} GFLOP/s"


_CPU_PEAK: dict[str, float | None] = {}


_MATMUL = """
import sys, time, torch
size, repeats, dtype = int(sys.argv[1]), int(sys.argv[2]), getattr(torch, sys.argv[3])
a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
a @ b
best = float("inf")
for _ in range(repeats):
    t0 = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t0)
print(2.0 * size ** 3 / best)
"""


def cpu_matmul_peak(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float | None:
    """FLOP/s of a large square matmul on this CPU with torch's threads: what a perfectly
    matmul-bound training step could reach here. Measured once per process, in a child process
    of its own (~2 s): a sweep process that ran OpenMP-parallel torch code itself would hang the
    trial processes it forks afterwards."""
    if dtype not in _CPU_PEAK:
        import subprocess
        import sys

        try:
            out = subprocess.run([sys.executable, "-c", _MATMUL, str(size), str(repeats), dtype],
                                 capture_output=True, text=True, timeout=120, check=True)
            _CPU_PEAK[dtype] = float(out.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, OSError, ValueError, IndexError):
            _CPU_PEAK[dtype] = None  # MFU is then left out, and the record says why
    return _CPU_PEAK[dtype]


def flop_check(model, batch: dict) -> float:
    """FLOPs per data token of one training step (forward + backward) as PyTorch's FlopCounterMode
    counts them, on this batch (pad-free, so every position is a data token). Registers the CPU
    flash-attention kernels, which torch's counter does not know, with its own SDPA formulas."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_attention()
    model.train()
    with FlopCounterMode(display=False) as counter:
        loss = model(**batch).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["input_ids"].numel()


def _gemm_4bit_flop(a_shape, b_shape, shape_b, *args, **kwargs) -> int:
    """bitsandbytes' 4-bit matmul: A (..., K) times the dequantized (N, K) weight."""
    rows = 1
    for size in a_shape[:-1]:
        rows *= size
    return 2 * rows * a_shape[-1] * shape_b[0]


def _register_cpu_attention() -> None:
    """Formulas torch's counter lacks: its CPU flash-attention kernels (the same math as the SDPA
    kernels it knows) and bitsandbytes' 4-bit matmul, a custom op it cannot see into."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    # torch's own SDPA formulas are already wrapped to take shapes (get_raw=True keeps them as they are)
    ops = [(getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None), flop_counter.sdpa_flop, True),
           (getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None),
            flop_counter.sdpa_backward_flop, True)]
    bnb = getattr(torch.ops, "bitsandbytes", None)
    if bnb is not None:
        ops += [(getattr(bnb, "gemm_4bit", None), _gemm_4bit_flop, False)]
    for op, formula, raw in ops:
        if op is not None and op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op, get_raw=raw)(formula)
