"""Additive methods: new trainable vectors or modules beside the frozen model."""

from harness.methods import register
from harness.methods.base import MethodSpec, space


def _ia3(model, params, ctx):
    from peft import IA3Config, get_peft_model

    config = IA3Config(task_type=ctx.task_type, target_modules=params.get("target_modules"),
                       feedforward_modules=params.get("feedforward_modules"),
                       modules_to_save=list(ctx.head_names) or None)
    return get_peft_model(model, config)


register(MethodSpec(
    name="ia3",
    family="additive",
    summary="IA3 (peft): learned scaling vectors on keys, values and feed-forward activations",
    apply=_ia3,
    defaults={"learning_rate": 1e-2, "target_modules": None, "feedforward_modules": None},
    search_space=space(learning_rate={"low": 1e-3, "high": 5e-2, "log": True}),
))
