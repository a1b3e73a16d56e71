"""A trial's job, built in one place for the sweep, the bench and confirmation runs: the cell, the
method's typed parameters and the resolved training settings kept apart, and the record's common part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.measure.provenance import environment
from harness.plan import Cell, evaluation_steps, rungs, trial_training
from harness.spec import LoadedSuite, MeasureSpec, MethodParams, RetentionSpec, ServingSpec, TrialTraining


@dataclass
class TrialJob:
    cell: Cell
    trial_number: int
    seed: int
    params: dict[str, Any]  # everything this trial fixes, flat as a suite writes it (the record shows it)
    sampled: dict[str, Any]  # only what Optuna chose
    method_params: MethodParams  # the method's own parameters, typed (its declaration in harness/methods)
    training: TrialTraining  # the suite's training settings with this trial's learning rate, batch size, ...
    measure: MeasureSpec
    device: str
    copy_model: bool  # inline trials must not touch the shared base model
    record_base: dict[str, Any]  # suite name/hash, objective, environment, config
    phase: str = "search"  # or "confirm"
    artifact_dir: str | None = None  # keep the trained adapter here (output.keep_adapters)
    memory_limit_mib: int | None = None  # CPU: the trial process's address space above its size at fork
    eval_steps: tuple[int, ...] = ()  # steps at which the validation split is scored in the loop
    tracking_root: str | None = None  # results/<suite>/tracking where the suite names trackers
    retention: RetentionSpec | None = None  # measure what training made the model forget (None: off)
    base_dir: str | None = None  # the suite file's folder: retention's data files are relative to it
    retention_cache: str | None = None  # results/<suite>/retention: the base's figures, measured once per model
    serving: ServingSpec | None = None  # profile what the tuned model costs to serve (None: not this run)
    devices: tuple[str, ...] = ()  # the devices leased to this trial (CUDA_VISIBLE_DEVICES in its process)

    @property
    def acceleration(self):
        return self.cell.acceleration

    @property
    def report_to(self) -> list[str]:
        return list(self.record_base["config"].get("tracking", [])) if self.tracking_root else []

    @property
    def run_name(self) -> str:
        return f"{self.phase}-trial-{self.trial_number:04d}-seed-{self.seed}"

    @property
    def ranks(self) -> int:
        return self.training.ranks

    @property
    def strategy(self) -> str:
        return self.cell.distributed.strategy

    def with_ranks(self, ranks: int) -> "TrialJob":
        """The same trial over `ranks` processes (processes: auto, resolved): the effective batch stays."""
        import dataclasses

        return dataclasses.replace(self, training=self.training.model_copy(update={"ranks": ranks}))

    def on_devices(self, devices: list[str]) -> "TrialJob":
        import dataclasses

        return dataclasses.replace(self, devices=tuple(devices))

    def with_micro_batch(self, micro: int) -> "TrialJob":
        """The same trial with a smaller micro-batch: the effective batch, and so the result, stay."""
        import dataclasses

        training = self.training.model_copy(update={"micro_batch_size": micro})
        return dataclasses.replace(self, training=training, params={**self.params, "micro_batch_size": micro})


def record_base(loaded: LoadedSuite, cell: Cell, suite_hash: str, phase: str = "search") -> dict[str, Any]:
    s = loaded.suite
    return {
        "suite": s.name, "suite_hash": suite_hash, "cell_id": cell.id, "model": cell.model.label,
        "task": cell.task_label, "task_kind": cell.task.kind, "method": cell.method_label,
        "method_name": cell.method.name, "method_family": cell.method.family, "phase": phase,
        "objective_metric": cell.metric, "objective_direction": cell.direction,
        "acceleration": {**cell.acceleration.options(), "axis_index": cell.axis_index, "base_method": cell.entry.display},
        "environment": environment(),
        "config": {"model": cell.model.model_dump(), "task": cell.task.model_dump(),
                   "training": s.training.model_dump(), "search_space": {k: v.model_dump() for k, v in cell.space.items()},
                   "search": {"strategy": s.search.strategy, "rungs": rungs(s) if s.search.strategy != "none" else [],
                              "rung_metric": cell.rung_metric if s.search.strategy != "none" else None},
                   "suite_file": str(loaded.path), "tracking": list(s.tracking.report_to)},
    }


def make_job(loaded: LoadedSuite, cell: Cell, *, trial_number: int, seed: int, device: str, suite_hash: str,
             sampled: dict[str, Any] | None = None, params: dict[str, Any] | None = None, phase: str = "search",
             artifact_dir: str | None = None, tracking_root: str | None = None,
             results_root: str | None = None, confirm_slot: int | None = None) -> TrialJob:
    """The job of one trial: `params` as given (a confirmation re-runs a trial's), else the cell's fixed
    values with what the sampler chose."""
    sampled = dict(sampled or {})
    flat = dict(params) if params is not None else {**cell.fixed, **sampled}
    method_params, training_values = cell.method.split(flat)
    suite = loaded.suite
    ranks = cell.processes if isinstance(cell.processes, int) else 1  # auto: resolved by the estimate (fitting.py)
    training = trial_training(suite, {**training_values, "ranks": ranks})
    return TrialJob(cell=cell, trial_number=trial_number, seed=seed, params=flat, sampled=sampled,
                    method_params=method_params, training=training,
                    measure=suite.measure, device=device, copy_model=suite.runner.isolation == "inline",
                    record_base=record_base(loaded, cell, suite_hash, phase), phase=phase, artifact_dir=artifact_dir,
                    memory_limit_mib=suite.runner.trial_memory_mib,
                    eval_steps=evaluation_steps(suite) if phase == "search" else (),
                    tracking_root=tracking_root if suite.tracking.report_to else None,
                    retention=suite.retention if suite.retention.enabled else None, base_dir=str(loaded.base_dir),
                    retention_cache=str(Path(results_root) / "retention") if results_root else None,
                    serving=suite.serving if profiles_serving(loaded, phase, confirm_slot) else None)


def profiles_serving(loaded: LoadedSuite, phase: str, confirm_slot: int | None) -> bool:
    """serving.runs first_confirmation: a method's first confirmation seed, or every search run where the
    suite confirms nothing (the leaderboard then reads the chosen one); every: every run."""
    suite = loaded.suite
    spec = suite.serving
    if not spec.enabled:
        return False
    if spec.runs == "every":
        return True
    if phase == "confirm":
        return confirm_slot == 0
    return suite.confirm.most == 0
