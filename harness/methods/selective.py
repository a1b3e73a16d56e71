"""Selective methods: train a chosen subset of the existing weights (plus the task head)."""

from pydantic import Field

from harness.methods import register
from harness.methods.base import MethodParams, MethodSpec, ModelInfo, freeze_all_but, is_head, peft_method

NO_BIAS_TYPES = {"llama", "mistral", "gemma", "gemma2", "gemma3", "olmo", "olmo2", "smollm3"}


def _bitfit(model, params, ctx):
    # BitFit (Ben Zaken et al., 2022): bias terms only. peft has no BitFit, so it is written here.
    return freeze_all_but(model, lambda name: name.endswith(".bias") or is_head(name, ctx))


def _has_biases(info: ModelInfo, head: str) -> str | None:
    if info.model_type in NO_BIAS_TYPES:
        return f"{info.model_type} models have no bias terms, so BitFit would train only the task head"
    return None


def _norm_module_names(model) -> list[str]:
    """Leaf names of every normalization module (LayerNorm, RMSNorm, ...), for peft's LN tuning."""
    return sorted({name.split(".")[-1] for name, module in model.named_modules()
                   if name and "norm" in type(module).__name__.lower()})


def _ln_tuning(model, params, ctx):
    return peft_method("LNTuningConfig", lambda p, c: {"target_modules": _norm_module_names(model)})(model, params, ctx)


class TopLayersParams(MethodParams):
    top_k: int = Field(2, ge=1, description="how many of the last transformer blocks train")


def transformer_layers(model):
    """(name, ModuleList) of the model's stack of transformer blocks: the longest ModuleList."""
    import torch

    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    return max(lists, key=lambda item: len(item[1]))


def _top_layers(model, params, ctx):
    # Partial freezing: only the last k blocks (and the head, and the final norm) train; no library does this.
    name, layers = transformer_layers(model)
    k = min(params.top_k, len(layers))
    keep = tuple(f"{name}.{i}." for i in range(len(layers) - k, len(layers)))
    stack_end = name.rsplit(".", 1)[0]
    return freeze_all_but(model, lambda n: n.startswith(keep) or is_head(n, ctx)
                          or (n.startswith(stack_end) and "norm" in n.lower() and not n.startswith(name)))


register(MethodSpec(
    name="bitfit", family="selective", apply=_bitfit, check=_has_biases,
    summary="BitFit: bias terms and the task head train, all other weights frozen",
    training={"learning_rate": 5e-3},
))
register(MethodSpec(
    name="ln_tuning", family="selective", apply=_ln_tuning, can_merge=True,
    summary="LayerNorm tuning (peft LNTuning): normalization layers and the task head train",
    training={"learning_rate": 5e-3},
))
register(MethodSpec(
    name="top_layers", family="selective", apply=_top_layers,
    summary="partial freezing: the top top_k transformer blocks, the final norm and the head train",
    params=TopLayersParams, training={"learning_rate": 1e-4},
))
