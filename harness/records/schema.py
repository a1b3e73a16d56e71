"""The TrialRecord: everything one trial produced, typed and versioned.

One rule for every change to it: bump SCHEMA_VERSION and add UPGRADES[old] (a function that turns a
record of the old version into one of the next). Readers upgrade every older record step by step;
a record of a newer version than this harness knows is refused with a clean message (exit 2)."""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 16

# What each compared number means, versioned: a change of definition (what peak memory measures, on
# which split the reported configuration is chosen) bumps its number here, and `harness compare`
# calls two numbers of different definitions "not comparable" instead of giving a false verdict.
DEFINITIONS = {
    "quality": 2,  # 1: test score of the test-chosen trial (schema 1); 2: test score of the validation-chosen one
    # 1: CPU whole-trial peak RSS of the trial process, GPU reserved above the CUDA baseline, evaluation
    # included; 2: the train phase's peak above the process before any model weights, on every device;
    # 3: the same, with the inherited weights resident before the start is read (2 counted weights read
    # from a file mapping twice on CPU) and glibc's free heap handed back at each phase start
    "peak_memory": 3,
    "throughput": 1,  # non-padding train tokens per second of train time
    "train_time": 1,  # the Trainer's loop with validation taken out
}


def _v1_to_v2(data: dict) -> dict:
    """v2 scores every trial on the validation split and chooses on it. A v1 record has no validation
    score: it was chosen on its test score, and says so (selection: test)."""
    return {**data, "validation_metrics": {}, "selection": "test"}


def _v2_to_v3(data: dict) -> dict:
    """v3 keeps each test metric's standard error over the examples and what each number means."""
    quality = 1 if data.get("selection") == "test" else 2
    return {**data, "metric_errors": {}, "definitions": {**{k: 1 for k in DEFINITIONS}, "quality": quality}}


def _v3_to_v4(data: dict) -> dict:
    """v4 measures memory above one baseline per phase, energy without validation, and the host's
    load; a v3 record's peak memory keeps its old meaning (definition 1) and has none of these."""
    return {**data, "host": {}}


def _v4_to_v5(data: dict) -> dict:
    """v5 names where a trial failed, keeps the out-of-memory attempts before it and the worker; the
    effective batch is batch_size (gradient_accumulation_steps became micro_batch_size)."""
    return {**data, "attempts": [], "failed_phase": None, "worker": None}


def _v5_to_v6(data: dict) -> dict:
    """v6 keeps where a pruned trial stopped and its score there (multi-fidelity search)."""
    return {**data, "stopped_at_step": None, "stopped_value": None}


def _v6_to_v7(data: dict) -> dict:
    """v7 keeps the trial's memory and speed prediction (harness estimate) beside what it measured."""
    return {**data, "estimate": None}


def _v7_to_v8(data: dict) -> dict:
    """v8 keeps the seconds a trial spent in experiment trackers (suite tracking.report_to)."""
    return {**data, "timing": {**data.get("timing", {}), "tracking_s": 0.0}}


def _v8_to_v9(data: dict) -> dict:
    """v9 keeps the acceleration options in force (kernels, compile, checkpointing, packing, attention)
    and the seconds spent compiling; before it, training.gradient_checkpointing was the only such option."""
    checkpointing = bool(data.get("config", {}).get("training", {}).get("gradient_checkpointing", False))
    options = {"kernels": "none", "compile": False, "gradient_checkpointing": checkpointing, "packing": False,
               "attention": None, "label": "ckpt" if checkpointing else "eager", "axis_index": None,
               "base_method": data.get("method")}
    return {**data, "acceleration": options, "timing": {**data.get("timing", {}), "compile_s": 0.0}}


def _v9_to_v10(data: dict) -> dict:
    """v10 says, for preference tasks, the objective, its beta and what the reference model was."""
    return {**data, "preference": None}


def _v10_to_v11(data: dict) -> dict:
    """v11 says, under synchronous successive halving (search.strategy sha), which rung a run trained to
    and the earlier runs of the same configuration whose steps it repeated."""
    return {**data, "halving": None}


def _v11_to_v12(data: dict) -> dict:
    """v12 says which validation metric a pruned run was judged by at the rung it stopped at
    (search.rung_metric); before it, always the objective."""
    stopped = data.get("stopped_at_step") is not None
    return {**data, "stopped_metric": data.get("objective_metric") if stopped else None}


def _v12_to_v13(data: dict) -> dict:
    """v13 keeps what the data checks found: rows read and dropped per split and reason (data.on_bad_rows:
    drop) and labels only validation/test have (data.allow_unseen_labels); before it, nothing was checked."""
    return {**data, "data_checks": None}


def _v13_to_v14(data: dict) -> dict:
    """v14 keeps what training made the model forget (retention) and the seconds spent measuring it."""
    return {**data, "retention": None, "timing": {**data.get("timing", {}), "retention_s": 0.0}}


def _v14_to_v15(data: dict) -> dict:
    """v15 keeps what the tuned model costs to serve (serving) and the seconds spent measuring it."""
    return {**data, "serving": None, "timing": {**data.get("timing", {}), "serving_s": 0.0}}


def _v15_to_v16(data: dict) -> dict:
    """v16 says which devices a trial leased and, for a trial over several ranks, each rank's figures."""
    return {**data, "distributed": None, "devices": None}


# version -> function that turns a record (a JSON mapping) of that version into the next version.
UPGRADES: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6, 6: _v6_to_v7, 7: _v7_to_v8,
                                               8: _v8_to_v9, 9: _v9_to_v10, 10: _v10_to_v11,
                                               11: _v11_to_v12, 12: _v12_to_v13, 13: _v13_to_v14,
                                               14: _v14_to_v15, 15: _v15_to_v16}


def upgrade(data: dict) -> dict:
    """A record mapping of any known version, brought to SCHEMA_VERSION; ValueError where it cannot be."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"schema_version is {version!r}, not a version number")
    if version > SCHEMA_VERSION:
        raise ValueError(f"written by a newer harness (record schema {version}; this one reads up to "
                         f"{SCHEMA_VERSION}): upgrade harness to read it")
    while version < SCHEMA_VERSION:
        data = UPGRADES[version](dict(data))
        version += 1
        data["schema_version"] = version
    return data
# skipped: predicted not to fit in the device's memory (harness estimate), so never started
Status = Literal["complete", "pruned", "failed", "oom", "crashed", "timeout", "diverged", "interrupted", "skipped"]


class Timing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    load_s: float = 0.0  # model load + method application
    train_s: float = 0.0  # the Trainer's train loop, in-loop validation left out
    validation_s: float = 0.0  # validation-split scoring, in the loop and at the end
    eval_s: float = 0.0  # test-split evaluation
    total_s: float = 0.0  # the whole trial, as the parent saw it (fork to record)
    tracking_s: float = 0.0  # inside training and at the end: experiment trackers' callbacks and final logging
    # torch.compile's own wall time (dynamo + inductor, forward and backward, recompiles included),
    # measured by torch._dynamo's counters; taken out of train_s, so tokens/s is the compiled steady state
    compile_s: float = 0.0
    retention_s: float = 0.0  # measuring what training made the model forget (retention), after the test split
    serving_s: float = 0.0  # profiling what the tuned model costs to serve (serving), last

    @property
    def overhead_s(self) -> float:
        """Everything but training, evaluation and retention: process start, model load, setup, record."""
        return max(self.total_s - self.train_s - self.validation_s - self.eval_s - self.retention_s
                   - self.serving_s, 0.0)


class Throughput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train_tokens: int = 0  # non-padding tokens the model was trained on
    train_tokens_per_s: float = 0.0  # over train_s, which excludes in-loop validation
    train_samples_per_s: float = 0.0
    train_steps: int = 0
    median_step_s: float = 0.0  # synchronized, after warm-up steps
    eval_samples_per_s: float = 0.0  # test-split evaluation
    generation_tokens_per_s: float | None = None  # tasks that generate
    flops_per_token: float = 0.0  # from the model's real shapes (harness/measure/flops.py)
    achieved_tflops: float = 0.0
    mfu: float | None = None  # achieved / peak_flops
    peak_flops: float | None = None  # the device's peak at the run's dtype (GPU datasheet; CPU measured)
    peak_source: str = ""  # where peak_flops comes from


class Memory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = ""  # what measured the peaks, e.g. "VmHWM (peak RSS) of the trial process"
    # what leaderboards compare: the train phase's peak above the baseline (the process before any
    # model weights), so weights + gradients + optimizer states + activations of training
    train_bytes: int | None = None
    eval_bytes: int | None = None  # the test evaluation's peak above the same baseline
    train_growth_bytes: int | None = None  # the train phase's peak above the trial's start
    peak_bytes: int = 0  # the trial's absolute peak (the process's, from its start to its record)
    by_phase_peak_bytes: dict[str, int] = Field(default_factory=dict)  # load, train, eval: absolute
    baseline_bytes: int = 0  # the process before any model weights (CPU: runtime pages; GPU: CUDA context)
    start_bytes: int = 0  # the process at the trial's start (CPU: with the inherited base model)
    gpu: dict[str, float] = Field(default_factory=dict)  # torch allocator peaks and NVML samples
    # ru_maxrss of the trial process from wait4. With measure.phase_peaks (the default) the kernel's
    # counter restarts at each phase, so this covers the last phase only; with phase_peaks false it is
    # the whole trial and must equal peak_bytes (benchmarks/rss_vs_time.sh checks it).
    kernel_max_rss_bytes: int | None = None


class Energy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = ""  # "nvmlDeviceGetTotalEnergyConsumption" where measured
    train_joules: float | None = None  # training's loop without the validation inside it
    joules_per_1k_tokens: float | None = None  # of training
    validation_joules: float | None = None
    eval_joules: float | None = None  # the test evaluation
    cost_usd: float | None = None  # train time x the suite's price per GPU-hour


class Retention(BaseModel):
    """What training made the model forget (harness/measure/retention.py), against the base itself."""

    model_config = ConfigDict(extra="forbid")
    measure: Literal["nll", "representation"]  # decoder LMs: next-token NLL and KL; other heads: 1 - linear CKA
    data: str = ""  # where the general text came from
    base: str = ""  # how "before" was computed (adapters disabled, or parameters swapped back)
    documents: int = 0  # general-text documents read (a prefix of one fixed seeded order)
    tokens: int = 0  # next-token targets over them
    cached_documents: int = 0  # of them, the base's NLL read from results/<suite>/retention (measured once per model)
    before_nll: float | None = None  # mean per-token NLL per document, the base
    after_nll: float | None = None  # ... the trained model
    forgetting: float | None = None  # after - before, paired by document (nats per token; > 0: forgot)
    forgetting_se: float | None = None  # its standard error over documents
    drift: float | None = None  # KL(tuned || base) of next-token distributions on validation inputs, nats/token
    drift_se: float | None = None
    drift_examples: int = 0
    representation_drift: float | None = None  # 1 - linear CKA of pooled last hidden states, base vs tuned
    lm_eval: dict[str, Any] | None = None  # {task: {metric: {before, after, change}}} (retention.lm_eval)
    budget_s: float = 0.0  # the time cap: retention.max_share of the run so far
    seconds: float = 0.0
    error: str | None = None  # why it could not be measured (the run's scores stand)


class ServingVariant(BaseModel):
    """One way of serving the tuned model (harness/measure/serving.py), timed on held-out inputs."""

    model_config = ConfigDict(extra="forbid")
    name: str  # base, adapter, merged, quantized_base, tuned
    description: str = ""
    weights_bytes: int = 0  # its weights and buffers as held
    working_bytes: int = 0  # what its largest measure needed above what was resident (activations, KV cache)
    rounds: int = 0  # timed rounds after the warm-up (medians kept)
    spread: float = 0.0  # (max - min) / median of its latency over rounds
    prefill_tokens_per_s: float | None = None  # decoders: one prompt of the median prompt length
    decode_ms_per_token: float | None = None  # decoders: greedy decode step at batch 1, prefill left out
    decode_ms_per_step_batch: float | None = None  # ... at serving.batch (each step gives batch tokens)
    decode_tokens_per_s_batch: float | None = None
    examples_per_s: float | None = None  # other heads: forward at batch 1
    examples_per_s_batch: float | None = None  # ... at the eval batch
    # slower than the base by this %: decode ms/token at batch 1 (decoders), ms/example (other heads); the median
    # over rounds of each round's ratio (every round times every variant once), and the lowest and highest ratio
    overhead_pct: float | None = None
    overhead_low_pct: float | None = None
    overhead_high_pct: float | None = None

    @property
    def peak_bytes(self) -> int:
        return self.weights_bytes + self.working_bytes


class Serving(BaseModel):
    """What the tuned model costs to serve, per variant (suite serving:)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["generate", "forward"] = "generate"
    prompt_tokens: int = 0  # the task's median held-out input length, every timed input cut to it
    new_tokens: int = 0
    batch: int = 0
    device: str = ""
    variants: list[ServingVariant] = Field(default_factory=list)
    ships: str = ""  # the variant a team would serve: merged where the method merges, else as trained
    mergeable: bool = False
    extra_tokens: int = 0  # virtual tokens every request carries (prompt tuning, P-tuning)
    cache_entries_per_layer: int = 0  # key/value entries added to every layer's cache (prefix tuning)
    merge_check: dict[str, Any] | None = None  # {compared, inputs, max_abs_diff, predictions_changed, predictions}
    artifact_bytes: int | None = None
    cost_per_million_tokens: float | None = None  # USD per 1M generated tokens at serving.batch (GPU price given)
    budget_s: float = 0.0
    seconds: float = 0.0
    error: str | None = None  # why it could not be measured (the run's scores stand)

    def variant(self, name: str) -> ServingVariant | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def shipped(self) -> ServingVariant | None:
        return self.variant(self.ships)


class RankFigures(BaseModel):
    """One rank of a trial over several processes, as its own trial process measured it."""

    model_config = ConfigDict(extra="forbid")
    rank: int
    train_bytes: int | None = None  # the rank's train-phase peak above its baseline (GPU: allocated)
    peak_bytes: int = 0  # the rank process's absolute peak
    median_step_s: float = 0.0  # its synchronized median step after warm-up
    train_joules: float | None = None  # its GPU's energy in training (NVML), where measured


class Distributed(BaseModel):
    """A trial trained over several ranks (runner.distributed; harness/runner/ranks.py). The record's own
    figures are the run's: memory.train_bytes the largest rank's, throughput.median_step_s the slowest
    rank's, tokens/s over every rank's tokens, MFU against the peak of all the ranks' GPUs
    (CPU ranks share one host, whose peak counts once)."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["ddp", "fsdp"]
    processes: int
    backend: str  # gloo (CPU) or nccl
    launcher: str = "torch.distributed.launcher.api.elastic_launch (torchrun's API), ranks forked"
    ranks: list[RankFigures] = Field(default_factory=list)
    slowest_rank: int | None = None  # by median step time
    largest_rank: int | None = None  # by train memory


class TrialRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    suite: str
    suite_hash: str
    cell_id: str
    model: str
    task: str
    task_kind: str
    method: str  # the entry's display label
    method_name: str  # the registered method
    method_family: str
    trial_number: int  # the Optuna trial (for confirmation runs: the trial whose config is re-run)
    seed: int
    phase: Literal["search", "confirm"] = "search"
    status: Status
    reason: str | None = None
    failed_phase: str | None = None  # load, train, validation or test: where a failed/oom/diverged trial stopped
    # earlier runs of this trial that ran out of memory in training, each with its micro-batch
    # size and reason (runner.oom_backoff halves the micro-batch and runs it again)
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    worker: str | None = None  # which worker ran it (harness worker; host:pid)
    stopped_at_step: int | None = None  # a pruned trial: the rung it stopped at
    stopped_value: float | None = None  # ... and its validation score there
    stopped_metric: str | None = None  # ... of this metric (search.rung_metric: a validation loss, or the objective)
    # the acceleration options in force (kernels, compile, gradient_checkpointing, packing, attention),
    # their label, the suite's acceleration_axis entry (None: no axis) and the method entry's own label
    acceleration: dict[str, Any] = Field(default_factory=dict)
    # preference tasks: the objective, its beta, and the reference the policy was held to ("the base with
    # adapters disabled (no copy)" or "a frozen copy of the model ...", with the copy's bytes)
    preference: dict[str, Any] | None = None
    # search.strategy sha (runner/halving.py): the rung this run trained to (0-based; stop_step), how many
    # configurations it was judged with there (bracket), and earlier_runs: this configuration's runs at
    # lower rungs (and lost attempts), each {rung, status, train_steps, train_s, validation_s, total_s,
    # stopped_value, stopped_metric}, whose steps this run repeated: compute spent, counted by report/compute.py
    halving: dict[str, Any] | None = None
    # a confirmation run: why its seed was run, under which rule (harness/sequential.py): {"rule": "fixed" or
    # "auto", "slot": its place in the seed list, "look": the look it was run for and "looks" planned, "level":
    # the interval its verdicts are read at, "why": the reason in words}
    confirmation: dict[str, Any] | None = None
    # the prediction made before the trial ran (harness/estimate): predicted_peak_bytes and its parts,
    # micro_batch, seq_len, fits, max_micro_batch, predicted_tokens_per_s, memory_limit_bytes,
    # assumptions; {"error": ...} where no prediction could be made
    estimate: dict[str, Any] | None = None
    retention: Retention | None = None  # what training made the model forget (suite retention:)
    serving: Serving | None = None  # what the tuned model costs to serve (suite serving:)
    distributed: Distributed | None = None  # a trial over several ranks: each rank's figures (None: one process)
    devices: list[str] | None = None  # the devices the worker leased to this trial (harness run --gpus)
    params: dict[str, Any] = Field(default_factory=dict)  # the hyper-parameters this trial used
    config: dict[str, Any] = Field(default_factory=dict)  # resolved model/task/training config
    objective_metric: str
    objective_direction: Literal["maximize", "minimize"]
    metrics: dict[str, float] = Field(default_factory=dict)  # test split: what is reported
    # standard error of each test metric over the test examples (binomial; bootstrap for F1, ROUGE)
    metric_errors: dict[str, float] = Field(default_factory=dict)
    definitions: dict[str, int] = Field(default_factory=lambda: dict(DEFINITIONS))
    validation_metrics: dict[str, float] = Field(default_factory=dict)  # validation split: what every choice reads
    # "validation": choices read validation_metrics; "test": a v1 record, chosen on its test score
    selection: Literal["validation", "test"] = "validation"
    # where the validation split came from: {"origin": "given"} or {"origin": "carved from train",
    # "fraction": 0.1, "seed": 0}, with its "size"
    validation_source: dict[str, Any] = Field(default_factory=dict)
    train_test_duplicates: int | None = None  # test examples that also stand in train, exactly
    # local and hub data, read whole by harness/tasks/checks.py: {"rows": {split: n}, "dropped": {split:
    # {reason: n}}, "unseen_labels": {split: {label: n}}, "summary": text}; None for built-in data
    data_checks: dict[str, Any] | None = None
    history: list[dict[str, float]] = Field(default_factory=list)  # loss/validation by step
    trainable_params: int = 0
    total_params: int = 0
    artifact_bytes: int = 0  # what saving the trained part takes (full: the whole checkpoint)
    artifact_path: str | None = None  # where it was kept (output.keep_adapters), relative to the results
    timing: Timing = Field(default_factory=Timing)
    throughput: Throughput = Field(default_factory=Throughput)
    memory: Memory = Field(default_factory=Memory)
    energy: Energy = Field(default_factory=Energy)
    data_fingerprint: str = ""
    environment: dict[str, Any] = Field(default_factory=dict)  # versions, hardware, git commit
    # measurement conditions: other processes' share of the host's CPU time while the trial ran
    # (other_cpu_share), and on a GPU the other processes on the device (harness/measure/host.py)
    host: dict[str, Any] = Field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""

    def run_summary(self) -> dict[str, Any]:
        """This run as a later run of the same configuration keeps it (search.strategy sha:
        halving.earlier_runs) and as report/compute.py counts it: rung, status, steps (a pruned run's
        stop step where none were counted), tokens, max_length, seconds and the score it stopped at."""
        return {"rung": (self.halving or {}).get("rung"), "status": self.status,
                "train_steps": int(self.throughput.train_steps or self.stopped_at_step or 0),
                "train_tokens": self.throughput.train_tokens,
                "max_length": self.config.get("model", {}).get("max_length"),
                "train_s": self.timing.train_s, "validation_s": self.timing.validation_s,
                "total_s": self.timing.total_s, "stopped_value": self.stopped_value,
                "stopped_metric": self.stopped_metric}

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable_params / self.total_params if self.total_params else 0.0

    @property
    def objective(self) -> float | None:
        """The objective metric on the test split: what leaderboards and compare report."""
        return self.metrics.get(self.objective_metric)

    @property
    def selection_score(self) -> float | None:
        """What the search, the best-trial pick and the leaderboard's row choice read: the objective
        on the validation split (a v1 record's test score, marked by selection == "test")."""
        source = self.metrics if self.selection == "test" else self.validation_metrics
        return source.get(self.objective_metric)


def measured_train_bytes(r: TrialRecord) -> int | None:
    """What the prediction is compared with: on a GPU torch's peak allocated bytes in training (the
    estimate predicts tensors, not the caching allocator's reserve); on a CPU the train phase's peak
    resident memory above the baseline."""
    allocated = r.memory.gpu.get("train_peak_allocated_bytes")
    return int(allocated) if allocated else r.memory.train_bytes
