"""The suite schema at the bottom of the house: typed, unknown keys rejected, importing nothing else
from harness. Only shape and types live here; checks that need the registries (names, files,
columns, what a method can run on) live in harness/config, above the registries."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator


def cell_id(task_label: str, model_label: str, method_label: str) -> str:
    """A cell's name on disk and in Optuna: the three labels with anything unsafe in a path as _."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", f"{task_label}--{model_label}--{method_label}")


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """'80GiB', '24 GB', '512MiB' or a number of bytes -> bytes; ValueError with the rule otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"a memory size must be positive, but got {text}")
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"a memory size is a positive number with a unit (GiB, GB, MiB, MB), e.g. 80GiB, "
                         f"but got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _memory_size(text: str) -> str:
    parse_bytes(text)  # ValueError with the rule where it does not read
    return text


MemorySize = Annotated[str, AfterValidator(_memory_size)]  # '80GiB', '24 GB', '512MiB': kept as written


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
    on_bad_rows: Literal["error", "drop"] = Field(
        "error", description="a row that cannot be used (not valid JSON/CSV, empty text, a null or mixed-type "
                             "label, a QA answer none of its options, a pair whose chosen equals rejected): error "
                             "stops with every such row by file:line; drop leaves them out and counts them per "
                             "split and reason in the record and on the report")
    allow_unseen_labels: bool = Field(
        False, description="labels (or answers) in validation/test that never occur in train are an error; "
                           "true keeps them (a class the model never trained on), counted on the report")

    @model_validator(mode="after")
    def _one_source(self) -> "DataSpec":
        given = [k for k in ("builtin", "files", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of builtin, files, hub must be set, but got {given or 'none'}")
        return self


class TaskSpec(Strict):
    name: str
    kind: str = Field(description="registered task family, e.g. classification")
    head: str | None = Field(None, description="the head where the kind offers several (classification: "
                                               "verbalizer, for decoders scoring label words)")
    models: list[str] | None = Field(None, description="labels of the suite's models that run this task "
                                                       "(default: all)")
    data: DataSpec
    labels: list[str] | None = Field(None, description="label names in order; read from the data if absent")
    metric: str | None = Field(None, description="this task's objective metric (overrides search.objective.metric)")
    train_sizes: list[int] | None = Field(None, description="one cell per training-set size (data.train_size caps each)")
    objective: Literal["reward", "dpo", "orpo", "simpo"] | None = Field(
        None, description="preference tasks: what trains on the pairs (TRL's trainers): reward (a reward model), "
                          "dpo, orpo or simpo (the policy itself); default dpo")
    beta: float | None = Field(None, gt=0, description="preference tasks: the objective's beta (DPO: strength of "
                                                       "the pull to the reference; default TRL's own)")


class ParamSpace(Strict):
    """A search dimension: a range (low, high, optional log/step) or a list of choices."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[None | bool | int | float | str] | None = None  # what Optuna can store

    @property
    def is_choice(self) -> bool:
        return self.choices is not None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)

    def problems(self) -> list[tuple[tuple, str]]:
        """(relative path, message) for a dimension Optuna could not sample."""
        if self.is_choice:
            out = [] if self.choices else [(("choices",), "choices must list at least one value")]
            if self.low is not None or self.high is not None:
                out.append(((), "give either choices or low/high, not both"))
            return out
        if self.low is None or self.high is None:
            return [((), "a search range needs both low and high (or a list of choices)")]
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return [((), f"low and high must be finite numbers, but got low={self.low}, high={self.high}")]
        out = []
        if self.low > self.high:
            out.append((("low",), f"low <= high must hold, but got low={self.low}, high={self.high}"))
        if self.log and self.low <= 0:
            out.append((("low",), f"a log range needs low > 0, but got low={self.low}"))
        if self.step is not None and (not math.isfinite(self.step) or self.step <= 0):
            out.append((("step",), f"step must be a positive number, but got step={self.step}"))
        if self.step is not None and self.log:
            out.append((("step",), "a log range cannot have a step"))
        return out


class AccelerationSpec(Strict):
    """Speed and memory options applied to every method alike (at suite level, per method, or as an
    axis of the sweep): each maps onto the library that implements it."""

    kernels: Literal["none", "liger"] = Field("none", description="liger: Liger's fused Triton kernels through "
                                                                  "the Trainer (use_liger_kernel; CUDA only)")
    compile: bool = Field(False, description="torch.compile the model (the Trainer's torch_compile); compile time "
                                             "is recorded apart and left out of train time and tokens/s")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (the Trainer's "
                                                            "activation checkpointing, non-reentrant)")
    packing: bool = Field(False, description="padding-free batches: each micro-batch as one row with position ids "
                                             "(DataCollatorWithFlattening); decoder causal-LM tasks only")
    attention: Literal["sdpa", "flash_attention_2", "eager"] | None = Field(
        None, description="attention implementation (default: the model's own choice)")

    def label(self) -> str:
        """Short name of what is on: eager where nothing is (the baseline of a speed-up table)."""
        parts = [self.kernels] if self.kernels != "none" else []
        parts += [short for name, short in (("compile", "compile"), ("gradient_checkpointing", "ckpt"),
                                            ("packing", "packing")) if getattr(self, name)]
        if self.attention is not None:
            parts.append(f"attn={self.attention}")
        return "+".join(parts) or "eager"

    def options(self) -> dict:
        """The options in force, for the record."""
        return {**self.model_dump(), "label": self.label()}

    def merged(self, over: "AccelerationSpec | None") -> "AccelerationSpec":
        """These options with the ones `over` sets explicitly on top."""
        if over is None:
            return self
        return self.model_copy(update={k: getattr(over, k) for k in over.model_fields_set})


class DistributedSpec(Strict):
    """A trial over several processes (devices): N ranks started by torch's elastic launcher, trained through
    the Trainer's own DDP or FSDP (accelerate underneath); harness/runner/ranks.py."""

    processes: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        1, description="ranks per trial, one device each; auto: the fewest at which `harness estimate` predicts the "
                       "method fits the device (FSDP), up to the devices a worker has (--gpus)")
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: every rank holds the whole model and optimizer, gradients averaged; fsdp: "
                           "parameters, gradients and optimizer states sharded over the ranks (FSDP2, fully_shard)")

    def merged(self, over: "DistributedSpec | None") -> "DistributedSpec":
        if over is None:
            return self
        return self.model_copy(update={k: getattr(over, k) for k in over.model_fields_set})

    def label(self) -> str:
        return f"{self.strategy} x{self.processes}"


class MethodEntry(Strict):
    name: str = Field(description="registered method name (harness ls methods)")
    label: str | None = Field(None, description="row label; set it to compare two variants of one method")
    params: dict[str, Any] = Field(default_factory=dict, description="fixed method or training params")
    search: dict[str, ParamSpace] = Field(default_factory=dict, description="search-space overrides")
    acceleration: AccelerationSpec | None = Field(None, description="options for this method over the suite's "
                                                                    "acceleration (only the keys given)")
    distributed: DistributedSpec | None = Field(None, description="this method's ranks per trial over the suite's "
                                                                  "runner.distributed (only the keys given), e.g. full "
                                                                  "fine-tuning with FSDP on 4 GPUs, LoRA on 1")

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
    seed: int = Field(0, description="the sampler's seed (each cell adds its index)")
    strategy: Literal["none", "median", "asha", "hyperband", "sha"] = Field(
        "none", description="early stopping on validation scores taken at the rungs: asha (Optuna's "
                            "SuccessiveHalvingPruner: each trial judged as it reaches a rung, against those "
                            "before it), hyperband, median; sha: synchronous successive halving, every "
                            "configuration of the cell judged together at each rung (runner/halving.py); "
                            "none trains every trial to the end")
    min_steps: int | None = Field(None, gt=0, description="the first rung: steps every trial trains before its first "
                                                          "judgement (default: max_steps / reduction_factor^3)")
    reduction_factor: int = Field(3, ge=2, description="rungs at min_steps x reduction_factor^k; asha keeps the "
                                                       "top 1/reduction_factor at each")
    rung_max_length: list[Annotated[int, Field(gt=0)]] | None = Field(
        None, description="sha only: the max_length each rung's runs truncate to, one per rung (min_steps x "
                          "reduction_factor^k); the bracket's last runs use each model's own. A cheaper fidelity "
                          "than steps alone where examples are long; a length above a model's max_length keeps "
                          "the model's")
    rung_metric: Literal["loss", "objective"] = Field(
        "loss", description="what the rungs judge runs by (every strategy but none): loss, the task's validation "
                            "log-loss of the true label where its family reports one (classification, QA), else "
                            "the objective; objective: the objective metric. Early in training accuracy is often "
                            "the same constant-class guess for every configuration, so it cannot rank them")
    objective: Objective = Field(default_factory=Objective)


class MethodTraining(BaseModel):
    """The training settings a method entry may fix in `params` or search over, beside the method's own
    parameters: declared once here (type, default, range, description) and listed by the suite's
    TrainingSpec, a method entry's TrainingParams and so a trial's TrialTraining, which `harness
    estimate` reads too. Not a suite block itself."""

    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the steps spent warming up")
    batch_size: int = Field(16, gt=0, description="examples per optimizer step (the effective batch)")
    optim: str = Field("adamw_torch", description="a transformers optimizer name, e.g. paged_adamw_8bit")


def _declared(name: str):
    """A MethodTraining field's declaration (type, default, range, description), for TrainingSpec to
    list it in its own order (the order a suite's training block and every record show)."""
    return copy.copy(MethodTraining.model_fields[name])


class TrainingSpec(Strict):
    """The suite's training settings (`training:`), every method's unless its entry fixes its own."""

    max_steps: int = Field(60, gt=0)
    batch_size: int = _declared("batch_size")
    micro_batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] | None = Field(
        None, description="examples per forward pass; gradient accumulation makes up batch_size (default: "
                                "all of it); auto: the largest that `harness estimate` predicts to fit")
    eval_batch_size: int = Field(64, gt=0)
    weight_decay: float = _declared("weight_decay")
    warmup_ratio: float = _declared("warmup_ratio")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    optim: str = _declared("optim")
    eval_every_steps: int | None = Field(None, gt=0, description="score the validation split every N steps "
                                                                  "(pruning, curves); it is always scored at the end")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TrialTraining(TrainingSpec):
    """One trial's training settings: the suite's, with the trial's own learning rate (the method's
    default, a value the suite fixes, or what the search chose) and any other per-method values."""

    learning_rate: float = Field(0.0, ge=0, description="0 for a baseline row, which does not train")
    ranks: int = Field(1, gt=0, description="processes the trial trains over (runner.distributed, resolved): "
                                            "batch_size stays the effective batch over all of them")

    @property
    def micro_batch(self) -> int:
        """Per rank. auto is resolved by the sweep before a trial runs (the estimate); unresolved it is the
        rank's share of the whole batch."""
        return self.micro_batch_size if isinstance(self.micro_batch_size, int) else max(self.batch_size // self.ranks, 1)

    @property
    def accumulation(self) -> int:
        """Steps accumulated per optimizer step on each rank: ranks x micro-batch x accumulation = batch_size,
        so a method over N ranks trains on the same effective batch as one over a single device."""
        return max(self.batch_size // (self.micro_batch * self.ranks), 1)


# Keys that moved or went, each with the message validate gives instead of "unknown key".
MOVED_KEYS = {
    ("search", "timeout_s"): "search.timeout_s is gone: a per-cell clock gives slow methods fewer trials, and every "
                             "method gets the same number of trials. Cap one trial with runner.trial_timeout_s "
                             "instead (a trial over it is recorded with status timeout)",
    ("search", "pruner"): "search.pruner is now search.strategy: none | median | asha | hyperband | sha (with "
                          "search.min_steps and search.reduction_factor)",
    ("training", "gradient_accumulation_steps"): "training.gradient_accumulation_steps is derived: batch_size is "
                                                 "the effective batch, micro_batch_size what runs at once, and "
                                                 "accumulation makes up the rest",
    ("training", "gradient_checkpointing"): "training.gradient_checkpointing is now acceleration.gradient_checkpointing "
                                            "(beside kernels, compile, packing and attention; per method under "
                                            "methods[].acceleration, or as a sweep axis with acceleration_axis)",
    ("training", "learning_rate"): "training.learning_rate is not used: each method starts from its own default "
                                   "learning rate (harness ls methods) and searches the same factor around it. Fix "
                                   "one per method in methods[].params.learning_rate, or set a range in "
                                   "methods[].search.learning_rate",
}


class OutputSpec(Strict):
    results_dir: str = "results"
    reports_dir: str = "reports"
    keep_adapters: bool = Field(False, description="save each trial's trained adapter under results/<suite>/adapters")


class ConfirmSpec(Strict):
    seeds: int | Literal["auto"] = Field(0, description="re-run each cell's validation-best configuration with "
                                                        "this many fresh seeds (never the search seed; 0: off), or "
                                                        "auto: min_seeds for every method, then more only where a "
                                                        "method is undecided against the best (harness/sequential.py)")
    min_seeds: int = Field(3, ge=2, description="seeds: auto: the seeds every method runs before the first look")
    max_seeds: int = Field(10, ge=2, description="seeds: auto: the most seeds any method runs")
    looks: int = Field(3, ge=1, description="seeds: auto: how many times the verdicts are read, evenly from "
                                            "min_seeds to max_seeds; each look reads a Bonferroni-corrected interval "
                                            "(level 1 - 0.10 / looks), so wrong verdicts stay at or under 5% per side")

    @model_validator(mode="after")
    def _auto_only(self):
        extra = sorted({"min_seeds", "max_seeds", "looks"} & self.model_fields_set)
        if self.seeds != "auto" and extra:
            raise ValueError(f"{', '.join(extra)} only apply with seeds: auto (seeds is {self.seeds})")
        if self.max_seeds < self.min_seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) is below min_seeds ({self.min_seeds})")
        return self

    @property
    def auto(self) -> bool:
        return self.seeds == "auto"

    @property
    def most(self) -> int:
        """The most seeds a cell can run: the fixed count, or max_seeds under auto."""
        return self.max_seeds if self.auto else int(self.seeds)


class CompareSpec(Strict):
    """Noise tolerances for `harness compare` where records carry no seed spread."""

    quality_abs: float = Field(0.01, ge=0, description="absolute change in the objective metric")
    memory_rel: float = Field(0.05, ge=0, description="relative change in peak memory")
    throughput_rel: float = Field(0.15, ge=0, description="relative change in train tokens/s")
    time_rel: float = Field(0.15, ge=0, description="relative change in train time")


class LimitsSpec(Strict):
    """What a method may need to be the answer; one that breaks a limit is listed with the limit it breaks."""

    memory: MemorySize | None = Field(None, description="the most train memory a method may need, e.g. 24GiB: its "
                                                        "measured train peak, or with decision.target its peak "
                                                        "predicted there")
    gpu: str | None = Field(None, description="a GPU kind the method must fit (harness estimate --gpu: l4, a10g, "
                                              "rtx4090, l40s, a100-40gb, a100, h100, h100-pcie, h200): its memory as "
                                              "the memory limit, the CUDA context counted")
    train_hours: float | None = Field(None, gt=0, description="the most hours one training run may take (measured; "
                                                              "with decision.target, predicted there)")
    cost: float | None = Field(None, gt=0, description="the most USD one training run may cost: its train time x "
                                                       "measure.price_per_gpu_hour")
    max_forgetting: float | None = Field(None, description="decoder LMs: the most forgetting a method may show, in "
                                                           "nats per token of general text (its mean over seeds; "
                                                           "suite retention:)")
    max_representation_drift: float | None = Field(None, ge=0, le=1, description="encoders and classifiers: the "
                                                                                 "most representation drift (1 - "
                                                                                 "linear CKA to the base)")
    serving_overhead: float | None = Field(None, description="the most serving overhead, in % of the base's decode "
                                                             "time per token (other heads: time per example), of the "
                                                             "variant the method ships (merged where it merges; suite "
                                                             "serving:)")
    serve_with: Literal["vllm", "sglang", "tgi", "llamacpp"] | None = Field(
        None, description="a serving engine that must take the method's artifact, as an adapter, merged or as a "
                          "whole model (harness/data/serving_engines.yaml, with its sources)")


class TargetSpec(Strict):
    """The model and GPU the team will really train on: each method's memory, largest micro-batch and
    speed there, predicted by `harness estimate` from the model's config (calibrated on this run's records
    where they were measured on the same kind of device); the quality stays the one measured here."""

    model: str = Field(description="a folder holding the model's config.json (weights are not needed) or a hub id")
    revision: str | None = None
    seq_len: int | None = Field(None, gt=0, description="tokens per example there (default: the suite's max_length)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("bfloat16", description="the dtype it trains in there")
    gpu: str | None = Field(None, description="the GPU kind there (default: decision.limits.gpu)")
    memory: MemorySize | None = Field(None, description="the memory to fit in there (default: the GPU's, or "
                                                        "decision.limits.memory)")


class DecisionSpec(Strict):
    """How the answer is read from the confirmed runs (report/decide.py)."""

    tolerance: float = Field(0.01, gt=0, description="the difference to the best, in the objective's units, "
                                                     "within which a method counts as equivalent (its 90% paired "
                                                     "interval inside +-tolerance: two one-sided tests). 0.01: one "
                                                     "point of accuracy, F1 or ROUGE, about one standard error of a "
                                                     "2,000-example test set")
    prefer: list[Literal["train_memory", "train_time", "forgetting", "serving_latency", "serving_memory"]] = Field(
        ["train_memory", "train_time"], min_length=1,
        description="among the best method and those equivalent to it, the answer is the first by these, in "
                    "order: less train memory (the training phase's peak), less train time, less forgetting "
                    "(decoder LMs: on general text; others: representation drift), less serving latency (decode "
                    "ms/token at batch 1 of the variant it ships; others: ms/example), less serving memory")
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    target: TargetSpec | None = Field(None, description="decide for this model and GPU: memory and speed predicted "
                                                        "there, quality measured on the suite's model")


class MeasureSpec(Strict):
    price_per_gpu_hour: float | None = Field(None, ge=0, description="turns train time into cost")
    nvml_period_ms: float = Field(5.0, gt=0, description="GPU memory sampling period")
    phase_peaks: bool = Field(True, description="CPU: reset the peak-RSS counter at each phase so each phase "
                                                "has its own peak; false leaves the kernel's whole-life counter "
                                                "(ru_maxrss, /usr/bin/time) untouched for cross-checks")


class RunnerSpec(Strict):
    isolation: Literal["process", "inline"] = "process"
    trial_timeout_s: float | None = Field(None, gt=0)
    max_examples: int | None = Field(None, gt=0, description="cap on the examples of every split, after the "
                                                             "data's sizes (for debugging; --smoke sets 16)")
    heartbeat_s: float = Field(5.0, gt=0, description="how often a worker records its running trial's heartbeat")
    lost_after_s: float = Field(30.0, gt=0, description="a trial with no heartbeat for this long has lost its "
                                                        "worker: it is recorded as crashed and run once more")
    oom_backoff: bool = Field(False, description="a trial out of memory in training is run again with half the "
                                                 "micro-batch (the same effective batch), down to 1")
    trial_memory_mib: int | None = Field(None, gt=0, description="CPU: cap each trial process's address space "
                                                                 "at its size when forked plus this many MiB")
    distributed: DistributedSpec = Field(default_factory=DistributedSpec,
                                         description="every method's ranks per trial (methods[].distributed overrides)")
    memory_limit: MemorySize | None = Field(None, description="memory a trial may use on its device, e.g. 80GiB "
                                                              "(default: the device's): a cell predicted not to fit is "
                                                              "recorded as skipped, and micro_batch_size: auto fits "
                                                              "under it")


class TrackingSpec(Strict):
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="experiment trackers each trial logs to, offline, under "
                                          "results/<suite>/tracking (pip install -e '.[tracking]')")


class RetentionText(Strict):
    """General text to measure forgetting on, instead of the built-in set: local files (JSONL, CSV, Parquet or
    plain text, one document per line) or a hub data set's split (a Wikipedia or FineWeb sample)."""

    files: list[str] | None = Field(None, min_length=1, description="local files, relative to the suite file")
    hub: str | None = Field(None, description="a hub data set id, e.g. HuggingFaceFW/fineweb-edu")
    config: str | None = Field(None, description="the hub data set's configuration")
    split: str = Field("train", description="the hub data set's split")
    column: str = Field("text", description="the column holding each document's text")

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("files", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of files, hub must be set, but got {given or 'none'}")
        return self


class LmEvalSpec(Strict):
    """lm-evaluation-harness tasks scored on the base and on the trained model (pip install lm_eval)."""

    tasks: list[str] = Field(min_length=1, description="lm-eval task names, e.g. [hellaswag, arc_easy]")
    limit: int | None = Field(None, gt=0, description="examples per task (lm-eval's limit)")
    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples (lm-eval's num_fewshot)")
    include_path: str | None = Field(None, description="a folder of your own task YAMLs (e.g. over local JSONL: "
                                                       "dataset_path: json), relative to the suite file")
    batch_size: int = Field(8, gt=0)


class RetentionSpec(Strict):
    """What training made the model forget, measured after each trained run beside the task score and read
    by no choice unless decision.prefer or decision.limits name it (harness/measure/retention.py)."""

    enabled: bool = Field(True, description="decoder LMs: forgetting (next-token NLL on general text, after "
                                            "minus before) and drift (KL to the base on validation inputs); "
                                            "other heads: representation drift (1 - linear CKA to the base)")
    data: RetentionText | None = Field(None, description="the general text (default: the built-in set, "
                                                         "185 paragraphs of ordinary prose on varied topics)")
    documents: int = Field(256, gt=0, description="the most documents read (a fixed, seeded order)")
    min_documents: int = Field(16, ge=2, description="documents read whatever the time cap says")
    max_tokens: int = Field(256, gt=1, description="tokens per document after truncation")
    drift_examples: int = Field(64, ge=0, description="the most validation inputs drift is read on (0: none)")
    max_share: float = Field(0.10, gt=0, le=1, description="measuring stops after this share of the run's time "
                                                           "so far (load, train, validation, test), past "
                                                           "min_documents")
    batch_size: int = Field(4, gt=0)
    lm_eval: LmEvalSpec | None = Field(None, description="lm-evaluation-harness tasks before and after (not "
                                                         "capped by max_share)")


class ServingSpec(Strict):
    """What each tuned model costs to serve, measured after training in the trial process: every variant
    that applies (the base, the adapter unmerged, merged, the quantized base) timed and sized on held-out
    inputs, and merged checked against unmerged (harness/measure/serving.py)."""

    enabled: bool = Field(True, description="profile serving (decoders: prefill tokens/s, decode ms/token at "
                                            "batch 1 and at serving.batch; other heads: examples/s)")
    runs: Literal["first_confirmation", "every"] = Field(
        "first_confirmation", description="first_confirmation: the first confirmation seed of each method (where "
                                          "the suite confirms nothing: every search run, the chosen one read); "
                                          "every: every trained run")
    batch: int = Field(4, gt=0, description="decoders: the batched decode measure's batch size")
    new_tokens: int = Field(16, ge=2, description="decoders: tokens generated per timed request (greedy, forced)")
    rounds: int = Field(3, ge=1, description="timed rounds of every measure after a warm-up; the median is kept")
    check_inputs: int = Field(4, ge=1, description="held-out inputs merged and unmerged logits are compared on")
    max_share: float = Field(0.10, gt=0, le=1, description="rounds past the first stop after this share of the "
                                                           "run's time so far")


class Suite(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="folder name for results")
    description: str | None = Field(None, description="one line for the report's title")
    models: list[ModelSpec] = Field(min_length=1, description="the models every task runs on (tasks[].models "
                                                              "narrows it)")
    tasks: list[TaskSpec] = Field(min_length=1, description="the tasks, each with its data")
    methods: list[MethodEntry] = Field(min_length=1, description="the fine-tuning methods compared (harness ls "
                                                                 "methods), each with the same budget")
    search: SearchSpec = Field(default_factory=SearchSpec, description="the search: its budget, sampler and "
                                                                       "early stopping")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="training settings every method "
                                                                             "shares")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="the first seeds the search; confirmations take the ones after it")
    references: bool = Field(True, description="add the untrained model (method none) and the trivial baseline "
                                               "(majority class; lead sentences) to every leaderboard")
    output: OutputSpec = Field(default_factory=OutputSpec)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    retention: RetentionSpec = Field(default_factory=RetentionSpec, description="what each trained run forgot")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="what each tuned model costs to serve")
    compare: CompareSpec = Field(default_factory=CompareSpec)
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    acceleration: AccelerationSpec = Field(default_factory=AccelerationSpec)
    acceleration_axis: list[AccelerationSpec] | None = Field(
        None, min_length=1, description="one cell per entry (over acceleration, under each method's own): a "
                                        "dimension of the sweep, like train_sizes; the report compares each with eager")


class TrainingParams(BaseModel):
    """What a method entry's `params` may hold beside the method's own: its peak learning rate and the
    MethodTraining settings, checked like them (strict types, unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
    learning_rate: float = Field(5e-5, gt=0, le=10, description="peak learning rate")
    weight_decay: float = _declared("weight_decay")
    warmup_ratio: float = _declared("warmup_ratio")
    batch_size: int = _declared("batch_size")
    optim: str = _declared("optim")


TRAINING_PARAMS = tuple(TrainingParams.model_fields)


class MethodParams(BaseModel):
    """A method's own parameters, declared once: type, range, choices, default and a one-line
    description per field (pydantic Field). Suites are checked against it, `harness ls methods`
    prints it, and the method's apply() receives an instance of it. Strict: 16.5 is not an int,
    "16" is not a number, true is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class NoParams(MethodParams):
    pass


def describe_field(name: str, info) -> str:
    """'r: int = 8 (>= 1) - rank of the update' from a pydantic field."""
    annotation = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sign} {getattr(meta, attr):g}")
    rng = f" ({', '.join(bounds)})" if bounds else ""
    default = info.get_default(call_default_factory=True)
    return f"{name}: {annotation} = {default!r}{rng}" + (f" - {info.description}" if info.description else "")


def yaml_number_hint(value) -> str:
    """YAML 1.1 (PyYAML) reads 5e-05 and 1e+3 as text: a float needs a dot in its mantissa (5.0e-05). Say how
    to write it where a string looks like such a number."""
    import re

    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+[eE][+-]?\d+", value.strip()):
        mantissa, _, exponent = value.strip().lower().partition("e")
        return f" (YAML reads {value} as text: write {mantissa}.0e{exponent})"
    return ""


def value_problems(model: type[BaseModel], values: dict[str, Any]) -> dict[str, str]:
    """key -> message for every value the declaration rejects ({} when all pass)."""
    try:
        model.model_validate(values)
    except ValidationError as exc:
        out = {}
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            shown = "" if isinstance(err.get("input"), (dict,)) else f", but got {err['input']!r}"
            out.setdefault(key, err["msg"].removeprefix("Value error, ") + shown + yaml_number_hint(err.get("input")))
        return out
    return {}


@dataclass(frozen=True)
class LoadedSuite:
    """A validated suite with the file it came from (relative data paths resolve against it)."""

    suite: Suite
    path: Path
    text: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def search_value_problems(key: str, dim: ParamSpace, model: type[BaseModel]) -> list[tuple[tuple, str]]:
    """Every value a search dimension can take must be one the declaration accepts."""
    annotation = model.model_fields[key].annotation
    if dim.is_choice:
        ends = [(("choices", i), value) for i, value in enumerate(dim.choices)]
    else:
        name = getattr(annotation, "__name__", str(annotation))
        if annotation not in (int, float):
            return [((), f"{key} is not a number ({name}): search it over a list of choices")]
        if annotation is int and not dim.is_int:
            return [((), f"{key} is a whole number: give low and high as integers (and step, if any), "
                         f"but got low={dim.low}, high={dim.high}")]
        ends = [(("low",), dim.low), (("high",), dim.high)]
    return [(rel, message[key]) for rel, value in ends if (message := value_problems(model, {key: value}))]
