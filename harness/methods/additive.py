"""Additive methods: new trainable vectors or modules beside the frozen model. IA3 and the soft
prompts come from peft; bottleneck adapters are written here (AdapterHub's `adapters` pins
transformers 4.57 and cannot live beside transformers 5)."""

from __future__ import annotations


from pydantic import Field

from harness.methods import register
from harness.methods.base import MethodParams, MethodSpec, ModelInfo, peft_method, space


class Ia3Params(MethodParams):
    target_modules: list[str] | str | None = Field(None, description="modules whose outputs are scaled; default: peft's")
    feedforward_modules: list[str] | str | None = Field(
        None, description="the feed-forward ones among them (scaled on their input); default: peft's")


register(MethodSpec(
    name="ia3", family="additive", apply=peft_method("IA3Config"), can_merge=True,
    summary="IA3 (peft): learned scaling vectors on keys, values and feed-forward activations",
    params=Ia3Params, training={"learning_rate": 1e-2},
))



class SoftPromptParams(MethodParams):
    num_virtual_tokens: int = Field(16, ge=1, description="trained virtual tokens prepended to the input")


class PTuningParams(SoftPromptParams):
    encoder_hidden_size: int = Field(128, ge=1, description="hidden width of the prompt encoder (MLP)")


def _needs_cache(info: ModelInfo, head: str) -> str | None:
    # peft builds the prefix as past_key_values; under transformers 5 only causal-LM heads of
    # decoders accept them (peft: "Model does not support past key values").
    if head != "causal_lm" or not info.is_decoder:
        return (f"prefix tuning needs past_key_values, which a {info.model_type} model with a {head} head "
                f"does not accept under transformers 5; use prompt_tuning or p_tuning")
    return None


_SOFT_PROMPT_PACKING = ("peft's soft prompts ignore position ids, so packed examples would attend to each other: "
                        "leave packing off for this method (methods[].acceleration.packing: false)")

register(MethodSpec(
    name="prompt_tuning", family="additive", apply=peft_method("PromptTuningConfig"), no_packing=_SOFT_PROMPT_PACKING, soft_prompt=True,
    summary="prompt tuning (peft): trained virtual-token embeddings prepended to the input",
    params=SoftPromptParams, training={"learning_rate": 3e-2},
))
register(MethodSpec(
    name="prefix_tuning", family="additive", apply=peft_method("PrefixTuningConfig"), check=_needs_cache, no_packing=_SOFT_PROMPT_PACKING,
    summary="prefix tuning (peft): trained key/value prefixes in every attention layer",
    params=SoftPromptParams, training={"learning_rate": 1e-2},
))
register(MethodSpec(
    name="p_tuning", family="additive", apply=peft_method("PromptEncoderConfig"), no_packing=_SOFT_PROMPT_PACKING, soft_prompt=True,
    summary="P-tuning (peft): virtual tokens produced by a small trained prompt encoder (MLP)",
    params=PTuningParams, training={"learning_rate": 1e-2},
))

# Where a bottleneck adapter goes: after the attention output projection and after the
# feed-forward output projection, before the residual add (Houlsby et al., 2019); Pfeiffer et
# al. (2021) keep only the feed-forward one. Keyed by config.model_type.
PLACEMENT = {
    "bert": ("attention.output.dense", "output.dense"),
    "roberta": ("attention.output.dense", "output.dense"),
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "mistral": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen2": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen3": ("self_attn.o_proj", "mlp.down_proj"),
    "gemma": ("self_attn.o_proj", "mlp.down_proj"),
}


def _make_adapter_class():
    import torch
    from torch import nn

    class BottleneckAdapter(nn.Module):
        """h -> h + up(act(down(h))) on the wrapped projection's output; up starts at zero, so the
        model starts exactly as it was."""

        def __init__(self, projection: nn.Linear, reduction_factor: int):
            super().__init__()
            self.projection = projection
            width = projection.out_features
            bottleneck = max(2, width // reduction_factor)
            self.adapter_down = nn.Linear(width, bottleneck, dtype=projection.weight.dtype,
                                          device=projection.weight.device)
            self.adapter_up = nn.Linear(bottleneck, width, dtype=projection.weight.dtype,
                                        device=projection.weight.device)
            nn.init.normal_(self.adapter_down.weight, std=1e-2)
            nn.init.zeros_(self.adapter_down.bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.projection(x)
            return h + self.adapter_up(torch.nn.functional.gelu(self.adapter_down(h)))

    return BottleneckAdapter


def _adapter_targets(model, model_type: str, placement: str) -> list[str]:
    attn_out, ffn_out = PLACEMENT[model_type]
    names = []
    for name, _ in model.named_modules():
        is_attn = name.endswith("." + attn_out)
        is_ffn = name.endswith("." + ffn_out) and not is_attn
        if is_ffn or (is_attn and placement == "houlsby"):
            names.append(name)
    return names


def _bottleneck(placement: str):
    def apply(model, params, ctx):
        adapter_class = _make_adapter_class()
        for param in model.parameters():
            param.requires_grad = False
        for name in _adapter_targets(model, ctx.model_type, placement):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, adapter_class(getattr(parent, child), params.reduction_factor))
        for name, param in model.named_parameters():
            param.requires_grad = ".adapter_" in name or any(
                name == h or name.startswith(h + ".") for h in ctx.head_names)
        return model

    return apply


def _has_placement(info: ModelInfo, head: str) -> str | None:
    if info.model_type not in PLACEMENT:
        return (f"bottleneck adapters know where to go in {', '.join(sorted(PLACEMENT))}, "
                f"not in {info.model_type} (add it to PLACEMENT in harness/methods/additive.py)")
    return None


class AdapterParams(MethodParams):
    reduction_factor: int = Field(16, ge=1, description="bottleneck width = the layer's width / reduction_factor")


for _placement, _summary in (("houlsby", "after attention and feed-forward outputs (Houlsby)"),
                             ("pfeiffer", "after the feed-forward output only (Pfeiffer)")):
    register(MethodSpec(
        name=f"adapter_{_placement}", family="additive", apply=_bottleneck(_placement), check=_has_placement,
        summary=f"bottleneck adapters (ours): down-project, GELU, up-project, residual; {_summary}",
        params=AdapterParams, training={"learning_rate": 3e-3},
        search_space=space(reduction_factor={"choices": [8, 16, 32]}),
    ))
