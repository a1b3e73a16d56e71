"""The LoRA family (peft): low-rank or structured updates beside frozen weights, all mergeable.
LoRA (with rsLoRA and DoRA as options), AdaLoRA, VeRA, LoHa, LoKr and OFT."""

from harness.methods import register
from harness.methods.base import MethodSpec, space


def _heads(ctx):
    return list(ctx.head_names) or None


def _lora(model, params, ctx):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=ctx.task_type, r=int(params["r"]), lora_alpha=float(params["alpha_ratio"]) * int(params["r"]),
        lora_dropout=float(params["dropout"]), target_modules=params.get("target_modules"),
        use_rslora=bool(params["use_rslora"]), use_dora=bool(params["use_dora"]), modules_to_save=_heads(ctx))
    return get_peft_model(model, config)


LORA_DEFAULTS = {"learning_rate": 3e-3, "r": 8, "alpha_ratio": 2.0, "dropout": 0.05,
                 "target_modules": None, "use_rslora": False, "use_dora": False}
LORA_SPACE = space(learning_rate={"low": 5e-4, "high": 2e-2, "log": True}, r={"choices": [4, 8, 16]})

register(MethodSpec(
    name="lora", family="reparametrized", apply=_lora, can_merge=True,
    summary="LoRA (peft): rank-r updates on attention projections; use_rslora, use_dora, target_modules: all-linear",
    defaults=LORA_DEFAULTS, search_space=LORA_SPACE,
))


def _adalora(model, params, ctx):
    from peft import AdaLoraConfig, get_peft_model

    total = max(int(ctx.max_steps), 10)
    config = AdaLoraConfig(task_type=ctx.task_type, init_r=int(params["init_r"]), target_r=int(params["target_r"]),
                           lora_alpha=2 * int(params["init_r"]), total_step=total,
                           tinit=int(total * 0.1), tfinal=int(total * 0.2), deltaT=max(1, total // 20),
                           target_modules=params.get("target_modules"), modules_to_save=_heads(ctx))
    return get_peft_model(model, config)


def _adalora_step(model, global_step: int) -> None:
    # AdaLoRA re-allocates ranks from gradient sensitivity; peft asks the training loop to call this.
    model.base_model.update_and_allocate(global_step)


register(MethodSpec(
    name="adalora", family="reparametrized", apply=_adalora, on_optimizer_step=_adalora_step, can_merge=True,
    summary="AdaLoRA (peft): LoRA whose ranks are pruned from init_r to target_r by importance during training",
    defaults={"learning_rate": 3e-3, "init_r": 12, "target_r": 4, "target_modules": None},
    search_space=space(learning_rate={"low": 5e-4, "high": 2e-2, "log": True}),
))


def _vera(model, params, ctx):
    from peft import VeraConfig, get_peft_model

    config = VeraConfig(task_type=ctx.task_type, r=int(params["r"]), target_modules=params.get("target_modules"),
                        modules_to_save=_heads(ctx))
    return get_peft_model(model, config)


register(MethodSpec(
    name="vera", family="reparametrized", apply=_vera, can_merge=True,
    summary="VeRA (peft): shared frozen random low-rank matrices, trained scaling vectors only",
    defaults={"learning_rate": 1e-2, "r": 64, "target_modules": None},
    search_space=space(learning_rate={"low": 1e-3, "high": 5e-2, "log": True}),
))


def _product(config_name: str):
    """LoHa and LoKr take the same arguments; only peft's config class differs."""

    def apply(model, params, ctx):
        import peft

        config = getattr(peft, config_name)(task_type=ctx.task_type, r=int(params["r"]), alpha=2 * int(params["r"]),
                                            target_modules=params.get("target_modules"), modules_to_save=_heads(ctx))
        return peft.get_peft_model(model, config)

    return apply


register(MethodSpec(
    name="loha", family="reparametrized", apply=_product("LoHaConfig"), can_merge=True,
    summary="LoHa (peft): Hadamard product of two low-rank updates",
    defaults={"learning_rate": 3e-3, "r": 8, "target_modules": None},
    search_space=space(learning_rate={"low": 5e-4, "high": 2e-2, "log": True}),
))


register(MethodSpec(
    name="lokr", family="reparametrized", apply=_product("LoKrConfig"), can_merge=True,
    summary="LoKr (peft): Kronecker-product update",
    defaults={"learning_rate": 3e-3, "r": 8, "target_modules": None},
    search_space=space(learning_rate={"low": 5e-4, "high": 2e-2, "log": True}),
))


def _oft(model, params, ctx):
    from peft import OFTConfig, get_peft_model

    config = OFTConfig(task_type=ctx.task_type, r=0, oft_block_size=int(params["block_size"]),
                       target_modules=params.get("target_modules"), modules_to_save=_heads(ctx))
    return get_peft_model(model, config)


register(MethodSpec(
    name="oft", family="reparametrized", apply=_oft, can_merge=True,
    summary="OFT (peft): block-diagonal orthogonal rotation of the frozen weights",
    defaults={"learning_rate": 3e-3, "block_size": 8, "target_modules": None},
    search_space=space(learning_rate={"low": 5e-4, "high": 2e-2, "log": True}),
))
