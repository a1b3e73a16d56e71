"""LoRA (peft): low-rank updates beside frozen weights; rsLoRA and DoRA as options."""

from harness.methods import register
from harness.methods.base import MethodSpec, space


def _apply(model, params, ctx):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=ctx.task_type,
        r=int(params["r"]),
        lora_alpha=float(params["alpha_ratio"]) * int(params["r"]),
        lora_dropout=float(params["dropout"]),
        target_modules=params.get("target_modules"),
        use_rslora=bool(params["use_rslora"]),
        use_dora=bool(params["use_dora"]),
        modules_to_save=list(ctx.head_names) or None,
    )
    return get_peft_model(model, config)


register(MethodSpec(
    name="lora",
    family="reparametrized",
    summary="LoRA (peft): rank-r adapters on attention projections (target_modules: all-linear to widen)",
    apply=_apply,
    defaults={"learning_rate": 3e-3, "r": 8, "alpha_ratio": 2.0, "dropout": 0.05,
              "target_modules": None, "use_rslora": False, "use_dora": False},
    search_space=space(learning_rate={"low": 5e-4, "high": 2e-2, "log": True},
                       r={"choices": [4, 8, 16]}),
))
