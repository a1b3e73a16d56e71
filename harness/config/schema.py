"""The suite schema: typed, with unknown keys rejected. Only shape and types live here;
checks that need the registries (names, files, columns, ranges) live in validate.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Strict):
    source: str = Field(description="builtin:<name>, a local folder, or a hub id such as org/model")
    name: str | None = Field(None, description="label in results; defaults to the source")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int = Field(128, gt=0, description="tokens per example after truncation")
    revision: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.source.removeprefix("builtin:").rstrip("/").split("/")[-1]


class HubData(Strict):
    name: str
    config: str | None = None
    splits: dict[Literal["train", "validation", "test"], str] = Field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )


class DataSpec(Strict):
    builtin: str | None = None
    files: dict[Literal["train", "validation", "test"], str] | None = None
    hub: HubData | None = None
    columns: dict[str, str] = Field(default_factory=dict, description="task field -> column in the data")
    train_size: int | None = Field(None, gt=0)
    validation_size: int | None = Field(None, gt=0)
    test_size: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> "DataSpec":
        given = [k for k in ("builtin", "files", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of builtin, files, hub must be set, but got {given or 'none'}")
        return self


class TaskSpec(Strict):
    name: str
    kind: str = Field(description="registered task family, e.g. classification")
    data: DataSpec
    labels: list[str] | None = Field(None, description="label names in order; read from the data if absent")
    metric: str | None = Field(None, description="this task's objective metric (overrides search.objective.metric)")
    train_sizes: list[int] | None = Field(None, description="one cell per training-set size (data.train_size caps each)")


class ParamSpace(Strict):
    """A search dimension: a range (low, high, optional log/step) or a list of choices."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None

    @property
    def is_choice(self) -> bool:
        return self.choices is not None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)


class MethodEntry(Strict):
    name: str = Field(description="registered method name (harness ls methods)")
    label: str | None = Field(None, description="row label; set it to compare two variants of one method")
    params: dict[str, Any] = Field(default_factory=dict, description="fixed method or training params")
    search: dict[str, ParamSpace] = Field(default_factory=dict, description="search-space overrides")

    @property
    def display(self) -> str:
        return self.label or self.name


class Objective(Strict):
    metric: str | None = Field(None, description="default: each task's main metric (accuracy, rougeL, ...)")
    direction: Literal["maximize", "minimize"] | None = Field(None, description="default: from the metric")


class SearchSpec(Strict):
    trials_per_cell: int = Field(3, gt=0, description="the same budget for every method")
    sampler: Literal["tpe", "random", "none"] = Field(
        "tpe", description="none: no search, one trial per cell with the method's defaults and fixed params")
    seed: int = 0
    timeout_s: float | None = Field(None, gt=0, description="wall-clock cap per cell")
    pruner: Literal["none", "median"] = "median"
    objective: Objective = Field(default_factory=Objective)


class TrainingSpec(Strict):
    max_steps: int = Field(60, gt=0)
    batch_size: int = Field(16, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    optim: str = Field("adamw_torch", description="a transformers optimizer name, e.g. paged_adamw_8bit")
    eval_every_steps: int | None = Field(None, gt=0, description="validation evals for pruning")
    gradient_checkpointing: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"


class OutputSpec(Strict):
    results_dir: str = "results"
    reports_dir: str = "reports"
    keep_adapters: bool = Field(False, description="save each trial's trained adapter under results/<suite>/adapters")


class ConfirmSpec(Strict):
    seeds: int = Field(0, ge=0, description="re-run each cell's best configuration with this many seeds (0: off)")


class CompareSpec(Strict):
    """Noise tolerances for `harness compare` where records carry no seed spread."""

    quality_abs: float = Field(0.01, ge=0, description="absolute change in the objective metric")
    memory_rel: float = Field(0.05, ge=0, description="relative change in peak memory")
    throughput_rel: float = Field(0.15, ge=0, description="relative change in train tokens/s")
    time_rel: float = Field(0.15, ge=0, description="relative change in train time")


class MeasureSpec(Strict):
    price_per_gpu_hour: float | None = Field(None, ge=0, description="turns train time into cost")
    nvml_period_ms: float = Field(5.0, gt=0, description="GPU memory sampling period")
    phase_peaks: bool = Field(True, description="CPU: reset the peak-RSS counter at each phase so each phase "
                                                "has its own peak; false leaves the kernel's whole-life counter "
                                                "(ru_maxrss, /usr/bin/time) untouched for cross-checks")


class RunnerSpec(Strict):
    isolation: Literal["process", "inline"] = "process"
    trial_timeout_s: float | None = Field(None, gt=0)


class Suite(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="folder name for results")
    description: str | None = None
    models: list[ModelSpec] = Field(min_length=1)
    tasks: list[TaskSpec] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    search: SearchSpec = Field(default_factory=SearchSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    output: OutputSpec = Field(default_factory=OutputSpec)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    compare: CompareSpec = Field(default_factory=CompareSpec)


# Training keys a method entry may fix in params or search over, next to the method's own.
TRAINING_PARAMS = ("learning_rate", "weight_decay", "warmup_ratio", "batch_size", "gradient_accumulation_steps", "optim")
