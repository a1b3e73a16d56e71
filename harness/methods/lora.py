"""The LoRA family (peft): low-rank or structured updates beside frozen weights, all mergeable.
LoRA (with rsLoRA and DoRA as options), AdaLoRA, VeRA, LoHa, LoKr and OFT."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.methods import register
from harness.methods.base import MethodParams, MethodSpec, peft_method, space

TargetModules = list[str] | str | None
TARGETS = Field(None, description="module names to adapt (a list, or 'all-linear'); default: peft's per-model choice")


class AdapterDtype(MethodParams):
    """The LoRA family's adapter precision (docs/distributed.md, "Adapters in the compute dtype")."""

    adapter_dtype: Literal["float32", "compute"] = Field(
        "float32", description="float32: peft's default, adapters of a bf16/fp16 model kept in float32 and each "
                               "adapted layer's input cast to float32 (stable, more activation memory); compute: "
                               "adapters in the model's own dtype (peft autocast_adapter_dtype=False)")


class LoraParams(AdapterDtype):
    r: int = Field(8, ge=1, description="rank of the update")
    alpha_ratio: float = Field(2.0, gt=0, description="lora_alpha = alpha_ratio x r, so the scale holds as r changes")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: TargetModules = TARGETS
    use_rslora: bool = Field(False, description="rank-stabilized scaling alpha/sqrt(r)")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (DoRA)")


def lora_alpha(params, ctx) -> dict:
    return {"lora_alpha": params.alpha_ratio * params.r}


LORA_SPACE = space(r={"choices": [4, 8, 16]})

register(MethodSpec(
    name="lora", family="reparametrized", apply=peft_method("LoraConfig", lora_alpha), can_merge=True,
    summary="LoRA (peft): rank-r updates on attention projections; use_rslora, use_dora, target_modules: all-linear",
    params=LoraParams, training={"learning_rate": 3e-3}, search_space=LORA_SPACE,
))


class AdaLoraParams(AdapterDtype):
    init_r: int = Field(12, ge=1, description="rank every adapted layer starts with")
    target_r: int = Field(4, ge=1, description="average rank left after the budget schedule")
    target_modules: TargetModules = TARGETS

    @model_validator(mode="after")
    def _ranks(self):
        if self.target_r > self.init_r:
            raise ValueError(f"target_r <= init_r must hold, but got target_r={self.target_r}, init_r={self.init_r}")
        return self


def _adalora_schedule(params, ctx) -> dict:
    total = max(int(ctx.max_steps), 10)
    return {"lora_alpha": 2 * params.init_r, "total_step": total, "tinit": int(total * 0.1),
            "tfinal": int(total * 0.2), "deltaT": max(1, total // 20)}


def _adalora_step(model, global_step: int) -> None:
    # AdaLoRA re-allocates ranks from gradient sensitivity; peft asks the training loop to call this.
    model.base_model.update_and_allocate(global_step)


register(MethodSpec(
    name="adalora", family="reparametrized", apply=peft_method("AdaLoraConfig", _adalora_schedule),
    on_optimizer_step=_adalora_step, can_merge=True,
    summary="AdaLoRA (peft): LoRA whose ranks are pruned from init_r to target_r by importance during training",
    params=AdaLoraParams, training={"learning_rate": 3e-3},
    # tried on 2 gloo ranks (peft 0.21): its orthogonality penalty multiplies the shards of lora_A and
    # lora_B ("size of tensor a (6) must match ... (12)"), and its rank allocation reads whole matrices
    no_fsdp="its orthogonality penalty and rank allocation need whole adapter matrices, which FSDP "
            "shards: use strategy: ddp",
))


class VeraParams(AdapterDtype):
    r: int = Field(64, ge=1, description="rank of the shared frozen random matrices")
    target_modules: TargetModules = TARGETS


register(MethodSpec(
    name="vera", family="reparametrized", apply=peft_method("VeraConfig"), can_merge=True,
    summary="VeRA (peft): shared frozen random low-rank matrices, trained scaling vectors only",
    params=VeraParams, training={"learning_rate": 1e-2},
))


class ProductParams(AdapterDtype):
    r: int = Field(8, ge=1, description="rank of each factor")
    target_modules: TargetModules = TARGETS


def _alpha_2r(params, ctx) -> dict:
    return {"alpha": 2 * params.r}


register(MethodSpec(
    name="loha", family="reparametrized", apply=peft_method("LoHaConfig", _alpha_2r), can_merge=True,
    summary="LoHa (peft): Hadamard product of two low-rank updates",
    params=ProductParams, training={"learning_rate": 3e-3},
))
register(MethodSpec(
    name="lokr", family="reparametrized", apply=peft_method("LoKrConfig", _alpha_2r), can_merge=True,
    summary="LoKr (peft): Kronecker-product update",
    params=ProductParams, training={"learning_rate": 3e-3},
))


class OftParams(AdapterDtype):
    oft_block_size: int = Field(8, ge=1, description="size of each orthogonal block")
    target_modules: TargetModules = TARGETS


register(MethodSpec(
    name="oft", family="reparametrized", apply=peft_method("OFTConfig", lambda params, ctx: {"r": 0}), can_merge=True,
    summary="OFT (peft): block-diagonal orthogonal rotation of the frozen weights",
    params=OftParams, training={"learning_rate": 3e-3},
))
