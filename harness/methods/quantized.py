"""Quantized bases with LoRA on top (bitsandbytes + peft): QLoRA (4-bit NF4/FP4, double
quantization, paged 8-bit AdamW) and 8-bit LoRA. The trial loads its own quantized copy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.methods import register
from harness.methods.base import MethodSpec, peft_method
from harness.methods.lora import LORA_SPACE, LoraParams, lora_alpha

_lora = peft_method("LoraConfig", lora_alpha)


class Int8LoraParams(LoraParams):
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (peft's k-bit prep)")


class QLoraParams(Int8LoraParams):
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the frozen base")
    double_quant: bool = Field(True, description="quantize the quantization constants too")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype the 4-bit weights are dequantized to; auto: bf16 on GPUs, float32 on CPUs")
    cpu_4bit_kernel: Literal["generic", "packed"] = Field(
        "generic", description="CPU only: generic = dequantize + float matmul, the same numbers on every CPU; "
                               "packed = bitsandbytes' AVX512-BF16 kernel for evaluation (bf16; needs that CPU)")


def _compute_dtype(params, device: str):
    import torch

    name = params.compute_dtype
    if name == "auto":  # bf16 on GPUs; on CPUs bf16 matmuls are ~25x slower than float32
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, name)


def _qlora_load(params, ctx) -> dict:
    from transformers import BitsAndBytesConfig

    # The new task head stays in full precision: it trains (peft's modules_to_save copies it).
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=params.quant_type,
        bnb_4bit_use_double_quant=params.double_quant,
        bnb_4bit_compute_dtype=_compute_dtype(params, ctx.device), llm_int8_skip_modules=_kept(ctx))}


def _int8_load(params, ctx) -> dict:
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=_kept(ctx))}


def _kept(ctx) -> list[str]:
    """Modules left in full precision: the new task head (it trains), and a causal LM's output head,
    as QLoRA does; a head tied to the input embeddings (SmolLM2) cannot be quantized apart from them
    (bitsandbytes then fails its first forward)."""
    return list(ctx.head_names) + (["lm_head"] if ctx.task_type == "CAUSAL_LM" else [])


def host_has_avx512_bf16() -> bool:
    """Whether this CPU has AVX512-BF16, read from /proc/cpuinfo (no bitsandbytes import needed)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "avx512_bf16" in line.split() for line in f)
    except OSError:
        return False


PACKED_BLOCK_N = 32  # bitsandbytes' packed CPU layout groups 32 output rows


def packable(module) -> bool:
    """Whether bitsandbytes' packed AVX512-BF16 kernel can take this 4-bit layer: its output size
    a multiple of 32 and its input size a multiple of the quantization block."""
    state = module.weight.quant_state
    return module.out_features % PACKED_BLOCK_N == 0 and module.in_features % state.blocksize == 0


def pin_cpu_4bit_path(model, packed: bool) -> dict[str, int]:
    """Make bitsandbytes' CPU path for 4-bit layers a choice of the suite, not of the host.

    bitsandbytes (0.49+) switches a Linear4bit layer, on its first no-grad forward in eval mode on a
    CPU with AVX512-BF16, to a packed layout and a bf16 kernel: evaluation numbers then depend on the
    CPU, layers whose sizes the layout cannot take fail ("N must be divisible by block_n"), and the
    packed weights stay packed when training resumes. Here every layer takes the generic path
    (dequantize, float matmul: the same numbers on every CPU) unless `packed` is asked for; then only
    the layers the kernel can take are packed, for evaluation only: each one's unpacked weights are
    kept aside and put back, exactly, before it trains again (bitsandbytes' own inverse is lossy: it
    rounds the block scales to bf16). Written here because bitsandbytes has no switch for it."""
    import copy

    import bitsandbytes as bnb

    counts = {"packed": 0, "generic": 0}
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        use = packed and packable(module)
        module.support_avx512bf16_for_cpu = use
        counts["packed" if use else "generic"] += 1
        if use:
            def keep_unpacked(mod, args):
                state = mod.weight.quant_state
                is_packed = getattr(state, "packing_format_for_cpu", False)
                training = mod.training or (bool(args) and getattr(args[0], "requires_grad", False))
                if training and is_packed:
                    mod.weight.data, mod.weight.quant_state = mod._harness_unpacked
                elif not training and not is_packed:  # bitsandbytes packs in this forward
                    mod._harness_unpacked = (mod.weight.data, copy.copy(state))

            module.register_forward_pre_hook(keep_unpacked)
    return counts


def _pin_4bit_path(model, params, ctx) -> None:
    if ctx.device == "cpu":
        reason = _packed_needs_the_cpu(params)
        if reason:
            raise RuntimeError(reason)
        pin_cpu_4bit_path(model, packed=params.cpu_4bit_kernel == "packed")


def _lora_on_quantized(model, params, ctx):
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
    return _lora(model, params, ctx)


QUANT_TRAINING = {"learning_rate": 3e-3, "optim": "paged_adamw_8bit"}


def _packed_needs_the_cpu(params) -> str | None:
    if params.cpu_4bit_kernel == "packed" and not host_has_avx512_bf16():
        return ("cpu_4bit_kernel: packed needs a CPU with AVX512-BF16 (bitsandbytes' packed kernel), "
                "and this one has none; use generic")
    return None

register(MethodSpec(
    name="qlora", family="quantized", apply=_lora_on_quantized, load_kwargs=_qlora_load,
    summary="QLoRA: 4-bit base (quant_type nf4|fp4, double_quant), LoRA on top, paged 8-bit AdamW",
    params=QLoraParams, training=QUANT_TRAINING, search_space=LORA_SPACE, check_params=_packed_needs_the_cpu,
    prepare_base=_pin_4bit_path,
))
register(MethodSpec(
    name="lora_8bit", family="quantized", apply=_lora_on_quantized, load_kwargs=_int8_load,
    summary="LoRA on an 8-bit (LLM.int8) base, paged 8-bit AdamW",
    params=Int8LoraParams, training=QUANT_TRAINING, search_space=LORA_SPACE,
    # tried on 2 gloo ranks (bitsandbytes 0.50): the sharded Int8Params lose their quantization state
    # ("'Parameter' object has no attribute 'CB'"); FSDP-QLoRA shards 4-bit weights only
    no_fsdp="its LLM.int8 weights lose their quantization state when FSDP shards them (FSDP-QLoRA "
            "shards 4-bit weights only): use qlora, or strategy: ddp",
))
