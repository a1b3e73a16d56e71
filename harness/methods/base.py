"""What a fine-tuning method is: its family, defaults, search space and how it changes a model.

Method modules import torch/peft lazily inside `apply`, so `harness validate` and `harness ls`
stay fast (no ~13 s import of the training stack)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from harness.config.schema import ParamSpace

FAMILIES = ("reference", "selective", "reparametrized", "additive", "quantized")


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


def space(**dims: dict[str, Any]) -> dict[str, ParamSpace]:
    return {name: ParamSpace(**dim) for name, dim in dims.items()}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    summary: str
    apply: Callable[[Any, dict[str, Any], ApplyContext], Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, ParamSpace] = field(default_factory=dict)
    # Returns why the method cannot be used with a model and task head, or None when it can.
    check: Callable[[ModelInfo, str], str | None] = lambda info, head: None
    # Extra from_pretrained arguments (quantization): the trial then loads its own copy of the model.
    load_kwargs: Callable[[dict[str, Any], ApplyContext], dict[str, Any]] | None = None
    # Called after each optimizer step, before gradients are cleared (AdaLoRA's rank allocation).
    on_optimizer_step: Callable[[Any, int], None] | None = None
    can_merge: bool = False  # the trained update folds into the base weights (merge_and_unload)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name}: family must be one of {FAMILIES}, got {self.family!r}")
        if "learning_rate" not in self.defaults:
            raise ValueError(f"method {self.name}: defaults must include learning_rate")

    def describe_space(self) -> str:
        parts = []
        for name, dim in self.search_space.items():
            if dim.is_choice:
                parts.append(f"{name}∈{dim.choices}")
            else:
                parts.append(f"{name}∈[{dim.low:g},{dim.high:g}]{' log' if dim.log else ''}")
        return " ".join(parts)


def freeze_all_but(model: Any, keep: Callable[[str], bool]) -> Any:
    """Selective methods: train only parameters whose name passes `keep` (no library does this)."""
    for name, param in model.named_parameters():
        param.requires_grad = keep(name)
    return model


def is_head(name: str, ctx: ApplyContext) -> bool:
    return any(name == h or name.startswith(h + ".") for h in ctx.head_names)
