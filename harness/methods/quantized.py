"""Quantized bases with LoRA on top (bitsandbytes + peft): QLoRA (4-bit NF4/FP4, double
quantization, paged 8-bit AdamW) and 8-bit LoRA. The trial loads its own quantized copy."""

from __future__ import annotations

from harness.methods import register
from harness.methods.base import MethodSpec, space
from harness.methods.lora import LORA_DEFAULTS, LORA_SPACE, _lora


def _compute_dtype(params, device: str):
    import torch

    name = params["compute_dtype"]
    if name == "auto":  # bf16 on GPUs; on CPUs bf16 matmuls are ~25x slower than float32
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, name)


def _qlora_load(params, ctx) -> dict:
    from transformers import BitsAndBytesConfig

    # The new task head stays in full precision: it trains (peft's modules_to_save copies it).
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=params["quant_type"],
        bnb_4bit_use_double_quant=bool(params["double_quant"]),
        bnb_4bit_compute_dtype=_compute_dtype(params, ctx.device), llm_int8_skip_modules=list(ctx.head_names))}


def _int8_load(params, ctx) -> dict:
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(ctx.head_names))}


def _lora_on_quantized(model, params, ctx):
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(params["gradient_checkpointing"]))
    return _lora(model, params, ctx)


QUANT_DEFAULTS = {**LORA_DEFAULTS, "optim": "paged_adamw_8bit", "gradient_checkpointing": False,
                  "compute_dtype": "auto"}

register(MethodSpec(
    name="qlora", family="quantized", apply=_lora_on_quantized, load_kwargs=_qlora_load,
    summary="QLoRA: 4-bit base (quant_type nf4|fp4, double_quant), LoRA on top, paged 8-bit AdamW",
    defaults={**QUANT_DEFAULTS, "quant_type": "nf4", "double_quant": True}, search_space=LORA_SPACE,
))
register(MethodSpec(
    name="lora_8bit", family="quantized", apply=_lora_on_quantized, load_kwargs=_int8_load,
    summary="LoRA on an 8-bit (LLM.int8) base, paged 8-bit AdamW",
    defaults=QUANT_DEFAULTS, search_space=LORA_SPACE,
))
