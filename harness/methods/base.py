"""What a fine-tuning method is: its family, defaults, search space and how it changes a model.

Method modules import torch/peft lazily inside `apply`, so `harness validate` and `harness ls`
stay fast (no ~13 s import of the training stack)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from harness.spec import (MethodParams, NoParams, ParamSpace, TrainingParams, describe_field, search_value_problems,
                          value_problems)

FAMILIES = ("reference", "selective", "reparametrized", "additive", "quantized", "baseline")

# Every method searches its learning rate over the same factor around its own default, log-uniform:
# [default / 5, default x 5], 25x wide (1.4 decades). Wide enough to hold the good learning rates
# the literature reports for a method across models and tasks (LoRA 1e-4..1e-3 on LLMs and up to
# 1e-2 on small encoders, soft prompts 1e-2..3e-1), narrow enough that with a budget of a few
# trials the draws are not spent on rates that train to chance; equal for every method, so no
# method wins by the width of its range (a suite can still set its own range per method).
LR_FACTOR = 5.0


def lr_range(default: float) -> ParamSpace:
    return ParamSpace(low=default / LR_FACTOR, high=default * LR_FACTOR, log=True)


def is_peft(model) -> bool:
    """Whether a method made the model a peft model (its adapters can be switched off)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


@dataclass(frozen=True)
class ApplyContext:
    """What a method needs to know about the model and task it is applied to."""

    task_type: str  # peft TaskType name: SEQ_CLS or CAUSAL_LM
    head_names: tuple[str, ...]  # new task-head modules that always train (classifier, score)
    model_type: str  # config.model_type, e.g. bert, llama
    max_steps: int = 0  # optimizer steps the trial will take (AdaLoRA's budget schedule needs it)
    device: str = "cpu"


@dataclass(frozen=True)
class ModelInfo:
    """What validation knows about a model without loading its weights."""

    model_type: str
    is_decoder: bool
    max_positions: int | None = None  # the config's position limit (max_position_embeddings); None: unknown


def space(**dims: dict[str, Any]) -> dict[str, ParamSpace]:
    return {name: ParamSpace(**dim) for name, dim in dims.items()}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    summary: str
    apply: Callable[[Any, Any, ApplyContext], Any]  # (model, params: self.params instance, ctx) -> model
    params: type[MethodParams] = NoParams  # the method's own parameters, typed
    training: dict[str, Any] = field(default_factory=dict)  # training settings it brings (learning_rate, optim)
    search_space: dict[str, ParamSpace] = field(default_factory=dict)  # beside the learning rate
    # a baseline row instead of a method: "untrained" (the model as loaded, no step taken) or "trivial"
    # (the task's trivial predictor, no model at all); nothing trains, nothing is searched
    baseline: str | None = None
    # Returns why the method cannot be used with a model and task head, or None when it can.
    check: Callable[[ModelInfo, str], str | None] = lambda info, head: None
    # Returns why these parameter values cannot run here (e.g. a kernel this host lacks), or None.
    check_params: Callable[[Any], str | None] = lambda params: None
    # Extra from_pretrained arguments (quantization): the trial then loads its own copy of the model.
    load_kwargs: Callable[[dict[str, Any], ApplyContext], dict[str, Any]] | None = None
    # Readies a freshly loaded base before the method is applied or a saved artifact is loaded onto it
    # (quantized methods pin bitsandbytes' CPU kernel path here, so a reloaded model computes alike).
    prepare_base: Callable[[Any, Any, ApplyContext], None] | None = None
    # Called after each optimizer step, before gradients are cleared (AdaLoRA's rank allocation).
    on_optimizer_step: Callable[[Any, int], None] | None = None
    can_merge: bool = False  # the trained update folds into the base weights (merge_and_unload)
    # why packed batches (acceleration.packing) break this method, or None where they do not
    # (peft's soft prompts drop position ids, so packed examples would attend to each other)
    no_packing: str | None = None
    soft_prompt: bool = False  # trains virtual tokens before the input, so the outputs get longer (not prefix tuning)
    # why FSDP cannot shard this method's model (runner.distributed strategy: fsdp), or None where it can
    no_fsdp: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.trains and "learning_rate" not in self.training:
            raise ValueError(f"method {self.name}: training must include its learning_rate")
        TrainingParams.model_validate(self.training)
        self.params.model_validate({})  # every field has a default

    @property
    def defaults(self) -> dict[str, Any]:
        """Everything the method fixes unless a suite says otherwise: its training settings and
        its parameters' defaults, as one flat mapping (the way a suite writes them)."""
        return {**self.training, **self.params().model_dump()}

    def split(self, flat: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """A flat mapping of suite values -> (this method's typed parameters, the training values)."""
        own = {k: v for k, v in flat.items() if k in self.params.model_fields}
        return self.params.model_validate(own), {k: v for k, v in flat.items() if k not in own}

    def problems(self, params: dict[str, Any], search: dict[str, ParamSpace]) -> list[tuple[tuple, str]]:
        """(path relative to the method entry, message) for every name, value and search range of a
        suite's entry that this method's declaration (or the training settings') rejects."""
        import difflib

        declared = {**{k: TrainingParams for k in TrainingParams.model_fields},
                    **{k: self.params for k in self.params.model_fields}}
        known = sorted(declared)
        out: list[tuple[tuple, str]] = []
        for section, keys in (("params", params), ("search", search)):
            for key in keys:
                if key not in declared:
                    close = difflib.get_close_matches(str(key), known, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    out.append(((section, key), f"unknown parameter {key!r} for method {self.name}.{hint} "
                                                f"Valid: {', '.join(known)}"))
        for model in (self.params, TrainingParams):
            values = {k: v for k, v in params.items() if declared.get(k) is model}
            for key, message in value_problems(model, values).items():
                out.append((("params", key) if key in values else ("params",), message))
        for key, dim in search.items():
            if key in declared:
                found = [(("search", key) + rel, msg) for rel, msg in dim.problems()]
                out += found or [(("search", key) + rel, msg) for rel, msg in search_value_problems(key, dim, declared[key])]
        if not out:
            reason = self.check_params(self.split(params)[0])
            if reason:
                out.append((("params",), reason))
        return out

    def build(self, model, params, ctx: ApplyContext):
        """The base model with this method applied (the one way trials, benches and tests apply it)."""
        if self.prepare_base is not None:
            self.prepare_base(model, params, ctx)
        return self.apply(model, params, ctx)

    def describe_params(self) -> list[str]:
        return [describe_field(name, info) for name, info in self.params.model_fields.items()]

    @property
    def trains(self) -> bool:
        return self.baseline is None

    def space(self) -> dict[str, ParamSpace]:
        """What a suite's search explores for this method unless it says otherwise: the learning rate
        over LR_FACTOR around the method's default, then the method's own dimensions."""
        if not self.trains:
            return {}
        return {"learning_rate": lr_range(self.training["learning_rate"]), **self.search_space}

    def describe_space(self) -> str:
        parts = []
        for name, dim in self.space().items():
            if dim.is_choice:
                parts.append(f"{name}∈{dim.choices}")
            else:
                parts.append(f"{name}∈[{dim.low:g},{dim.high:g}]{' log' if dim.log else ''}")
        return " ".join(parts)


def peft_method(config_class: str, derive: Callable[[Any, ApplyContext], dict[str, Any]] | None = None):
    """apply() for a peft method: peft's config class, filled from the method's parameters that share
    its field names, plus what `derive` computes (e.g. lora_alpha from r), the task type and the
    task head as modules_to_save (a new head always trains)."""

    def apply(model, params, ctx):
        import dataclasses

        import peft

        config_type = getattr(peft, config_class)
        names = {f.name for f in dataclasses.fields(config_type)}
        kwargs = {k: v for k, v in params.model_dump().items() if k in names}
        kwargs.update(derive(params, ctx) if derive else {})
        if "modules_to_save" in names and ctx.head_names:
            kwargs["modules_to_save"] = list(ctx.head_names)
        # adapter_dtype (the LoRA family, QLoRA): float32 is peft's default (autocast_adapter_dtype: adapters
        # of a bf16/fp16 model kept in float32, each adapted layer's input cast to float32); compute keeps the
        # adapters in the model's dtype
        autocast = getattr(params, "adapter_dtype", "float32") == "float32"
        return peft.get_peft_model(model, config_type(task_type=ctx.task_type, **kwargs),
                                   autocast_adapter_dtype=autocast)

    return apply


def freeze_all_but(model: Any, keep: Callable[[str], bool]) -> Any:
    """Selective methods: train only parameters whose name passes `keep` (no library does this)."""
    for name, param in model.named_parameters():
        param.requires_grad = keep(name)
    return model


def is_head(name: str, ctx: ApplyContext) -> bool:
    return any(name == h or name.startswith(h + ".") for h in ctx.head_names)


def generate(model, **kwargs):
    """model.generate, for every method, except peft's prompt learning on a causal LM, generated here from
    the base: under transformers 5 (5.25, peft 0.21) peft's generate looks for the cache under
    `past_key_values`, which transformers now passes as `cache`, so it takes every decoding step for the
    first. Soft prompts (prompt tuning, P-tuning) had their virtual tokens re-inserted at every step (each
    token predicted after a fresh copy of the prompt; the cache grew by num_virtual_tokens + 1 a step);
    prefix tuning had its cache replaced by the bare prefix at every step (each token predicted from the
    prefix and the last token alone). Here soft prompts go in front as embeddings, and the prefix goes in
    as the cache of num_virtual_tokens placeholder positions. Tested against full recomputation. The
    result keeps generate's shape: the input ids, then the new tokens."""
    import torch

    # every process generates on its own: a trial over several ranks is scored by rank 0 alone on its whole
    # copy of the model, where transformers would otherwise sync each step with the other ranks (FSDP)
    kwargs.setdefault("synced_gpus", False)
    config = model.peft_config[model.active_adapter] if is_peft(model) else None
    kind = type(config).__name__ if config is not None else ""
    if kind not in ("PromptTuningConfig", "PromptEncoderConfig", "PrefixTuningConfig") \
            or "CAUSAL" not in str(config.task_type):
        return model.generate(**kwargs)
    ids, mask = kwargs.pop("input_ids"), kwargs.pop("attention_mask", None)
    base = model.get_base_model()
    if mask is None:
        mask = torch.ones_like(ids)
    virtual = torch.ones(ids.shape[0], config.num_virtual_tokens, dtype=mask.dtype, device=mask.device)
    mask = torch.cat([virtual, mask], dim=1)
    if kind == "PrefixTuningConfig":  # the prefix is the cache of its positions; generate skips cached ids
        placeholder = torch.zeros_like(virtual, dtype=ids.dtype)
        out = base.generate(input_ids=torch.cat([placeholder, ids], dim=1), attention_mask=mask,
                            past_key_values=model.get_prompt(batch_size=ids.shape[0]), **kwargs)
        return out[:, virtual.shape[1]:]
    embeds = base.get_input_embeddings()(ids)
    prompts = model.get_prompt(batch_size=ids.shape[0]).to(embeds.dtype)
    new = base.generate(inputs_embeds=torch.cat([prompts, embeds], dim=1), attention_mask=mask, **kwargs)
    return torch.cat([ids, new], dim=1)
