"""Selective methods: train a chosen subset of the existing weights (plus the task head)."""

from harness.methods import register
from harness.methods.base import MethodSpec, freeze_all_but, is_head, space


def _bitfit(model, params, ctx):
    # BitFit (Ben Zaken et al., 2022): bias terms only. peft has no BitFit, so it is written here.
    return freeze_all_but(model, lambda name: name.endswith(".bias") or is_head(name, ctx))


def _norm_module_names(model) -> list[str]:
    """Leaf names of every normalization module (LayerNorm, RMSNorm, ...), for peft's LN tuning."""
    return sorted({name.split(".")[-1] for name, module in model.named_modules()
                   if name and "norm" in type(module).__name__.lower()})


def _ln_tuning(model, params, ctx):
    from peft import LNTuningConfig, get_peft_model

    config = LNTuningConfig(task_type=ctx.task_type, target_modules=_norm_module_names(model),
                            modules_to_save=list(ctx.head_names) or None)
    return get_peft_model(model, config)


register(MethodSpec(
    name="bitfit",
    family="selective",
    summary="BitFit: bias terms and the task head train, all other weights frozen",
    apply=_bitfit,
    defaults={"learning_rate": 5e-3},
    search_space=space(learning_rate={"low": 5e-4, "high": 3e-2, "log": True}),
))

register(MethodSpec(
    name="ln_tuning",
    family="selective",
    summary="LayerNorm tuning (peft LNTuning): normalization layers and the task head train",
    apply=_ln_tuning,
    defaults={"learning_rate": 5e-3},
    search_space=space(learning_rate={"low": 5e-4, "high": 3e-2, "log": True}),
))
