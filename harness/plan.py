"""Expand a suite into cells (model x task x method), each with its search space and budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.spec import TRAINING_PARAMS, AccelerationSpec, DistributedSpec, TrialTraining, cell_id, MethodEntry, ModelSpec, ParamSpace, Suite, TaskSpec
from harness.methods import METHODS, MethodSpec


@dataclass(frozen=True)
class Cell:
    model: ModelSpec
    task: TaskSpec  # with data.train_size set to this cell's size where the task has train_sizes
    entry: MethodEntry
    method: MethodSpec
    fixed: dict[str, Any]  # params every trial of this cell uses unless searched
    space: dict[str, ParamSpace]  # what Optuna searches
    budget: int  # trials; the same for every method
    metric: str = "accuracy"  # the objective
    direction: str = "maximize"
    acceleration: AccelerationSpec = AccelerationSpec()  # the options in force: suite's, axis entry's, method's
    axis_index: int | None = None  # its entry in the suite's acceleration_axis, where the suite has one
    rung_metric: str = "accuracy"  # what the search's rungs judge runs by (rung_judge)
    rung_direction: str = "maximize"
    distributed: DistributedSpec = DistributedSpec()  # ranks per trial: the runner's, with the method entry's keys

    @property
    def processes(self) -> int | str:
        """Ranks per trial (auto is resolved per trial by the estimate); 1 for rows that train nothing."""
        return self.distributed.processes if self.method.trains else 1

    @property
    def confirms(self) -> bool:
        """Baseline rows are not re-run with seeds (nothing trained, nothing selected)."""
        return self.method.trains

    @property
    def task_label(self) -> str:
        """The task as results name it: with the training-set size where the suite sweeps sizes."""
        return f"{self.task.name}@{self.task.data.train_size}" if self.task.train_sizes else self.task.name

    @property
    def method_label(self) -> str:
        """The method as results name it: with the acceleration options where the suite sweeps them."""
        if self.axis_index is None:
            return self.entry.display
        return f"{self.entry.display}+{self.acceleration.label()}"

    @property
    def id(self) -> str:
        return cell_id(self.task_label, self.model.label, self.method_label)


def objective(suite: Suite, task: TaskSpec) -> tuple[str, str]:
    """(metric, direction) a task's cells optimize: the task's own, the suite's, or the family's main one."""
    from harness.tasks import family_for

    family = family_for(task)
    metric = task.metric or suite.search.objective.metric or family.main_metric
    higher = family.metrics.get(metric, True)
    return metric, suite.search.objective.direction or ("maximize" if higher else "minimize")


def rung_judge(suite: Suite, task: TaskSpec, objective_: tuple[str, str]) -> tuple[str, str]:
    """(metric, direction) the search's rungs judge runs stopped early by (search.rung_metric): the task
    family's validation loss where it reports one, else the objective."""
    from harness.tasks import family_for

    family = family_for(task)
    if suite.search.rung_metric == "loss" and family.rung_metric is not None:
        return family.rung_metric, "minimize"
    return objective_


def task_variants(task: TaskSpec) -> list[TaskSpec]:
    """One task per training-set size (the size axis); the task itself where it has none."""
    if not task.train_sizes:
        return [task]
    return [task.model_copy(update={"data": task.data.model_copy(update={"train_size": n})})
            for n in task.train_sizes]


def acceleration_variants(suite: Suite, entry: MethodEntry) -> list[tuple[AccelerationSpec, int | None]]:
    """(options, axis index) per cell of a method entry: the suite's options under each axis entry
    (the axis as a sweep dimension, like train_sizes), the method's own on top; one cell without an axis.
    Baseline rows train nothing, so they get one cell whatever the axis."""
    if not suite.acceleration_axis or not METHODS.get(entry.name).trains:
        return [(suite.acceleration.merged(entry.acceleration), None)]
    return [(suite.acceleration.merged(option).merged(entry.acceleration), i)
            for i, option in enumerate(suite.acceleration_axis)]


def search_seed(suite: Suite) -> int:
    return suite.seeds[0]


def confirm_seeds(suite: Suite) -> list[int]:
    """Fresh seeds for the confirmation runs, never the search seed (a selected trial re-run with its
    own seed repeats its luck): the suite's further seeds, then the numbers after them."""
    k = suite.confirm.most
    seeds = [s for s in suite.seeds[1:] if s != search_seed(suite)][:k]
    nxt = max(suite.seeds) + 1
    while len(seeds) < k:
        seeds.append(nxt)
        nxt += 1
    return seeds


def rungs(suite: Suite) -> list[int]:
    """Where a multi-fidelity search judges every trial: min_steps x reduction_factor^k (the steps
    Optuna's successive-halving pruners promote at), the same for every method so early stopping is
    as even as the budget. Only rungs that leave at least reduction_factor x their steps of
    training: a trial stopped at 90 of 100 steps saves little, and its validation would be paid by
    every trial."""
    search, top = suite.search, suite.training.max_steps
    first = search.min_steps or max(1, top // search.reduction_factor ** 3)
    out, step = [], first
    while step * search.reduction_factor <= top:
        out.append(step)
        step *= search.reduction_factor
    return out


def evaluation_steps(suite: Suite) -> tuple[int, ...]:
    """Steps at which search trials score the validation split while training: the rungs under a
    search strategy (and nowhere else: no evaluation that no decision reads), else every
    eval_every_steps for the curves."""
    if suite.search.strategy != "none":
        return tuple(rungs(suite))
    every = suite.training.eval_every_steps
    return tuple(range(every, suite.training.max_steps + 1, every)) if every else ()


SMOKE_STEPS = 2
SMOKE_EXAMPLES = 8  # enough to run every path; generation (summaries) is what a smoke spends its time on


def smoke_suite(suite: Suite) -> Suite:
    """`harness run --smoke`: every cell once, with the method's defaults, for SMOKE_STEPS steps (one
    in-loop validation at the end) on at most SMOKE_EXAMPLES examples of each split, so every code
    path of the suite (model load, data, method, training, validation, test evaluation, record,
    report) runs in minutes. Results go to a folder of their own (<name>-smoke)."""
    return suite.model_copy(update={
        "name": f"{suite.name}-smoke",
        "search": suite.search.model_copy(update={"trials_per_cell": 1, "sampler": "none", "strategy": "none"}),
        "confirm": suite.confirm.model_copy(update={"seeds": 0}),
        "training": suite.training.model_copy(update={"max_steps": SMOKE_STEPS, "eval_every_steps": SMOKE_STEPS}),
        "runner": suite.runner.model_copy(update={"max_examples": SMOKE_EXAMPLES}),
        "output": suite.output.model_copy(update={"keep_adapters": False}),
        # the serving profile's path, at its least: one timed round, four new tokens
        "serving": suite.serving.model_copy(update={"rounds": 1, "new_tokens": 4}),
    })


def training_defaults(suite: Suite) -> dict[str, Any]:
    """The suite's training settings a method may override (batch size, optimizer, ...)."""
    t = suite.training
    return {name: getattr(t, name) for name in TRAINING_PARAMS if hasattr(t, name)}


def reference_entries(suite: Suite) -> list[MethodEntry]:
    """The baseline rows every leaderboard gets (suite.references), unless the suite lists them itself."""
    if not suite.references:
        return []
    listed = {e.name for e in suite.methods}
    return [MethodEntry(name=name) for name in ("none", "trivial") if name not in listed]


def plan(suite: Suite) -> list[Cell]:
    cells = []
    for task in (variant for t in suite.tasks for variant in task_variants(t)):
        metric, direction = objective(suite, task)
        judge, judge_direction = rung_judge(suite, task, (metric, direction))
        for model in suite.models:
            if task.models is not None and model.label not in task.models:
                continue
            for entry in [*suite.methods, *reference_entries(suite)]:
                method = METHODS.get(entry.name)
                fixed = {**training_defaults(suite), **method.defaults, **entry.params}
                space = {k: v for k, v in {**method.space(), **entry.search}.items()
                         if k not in entry.params or k in entry.search}
                budget = suite.search.trials_per_cell
                if suite.search.sampler == "none" or not method.trains:  # fixed: defaults and params only
                    space, budget = {}, 1
                for options, axis_index in acceleration_variants(suite, entry):
                    cells.append(Cell(model, task, entry, method, fixed, space, budget, metric, direction,
                                      options, axis_index, judge, judge_direction,
                                      suite.runner.distributed.merged(entry.distributed)))
    return cells


def distributions(space: dict[str, ParamSpace]) -> dict[str, Any]:
    """Optuna distributions for a cell's search space."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for name, dim in space.items():
        if dim.is_choice:
            out[name] = CategoricalDistribution(dim.choices)
        elif dim.is_int:
            out[name] = IntDistribution(dim.low, dim.high, log=dim.log, step=int(dim.step or 1))
        else:
            out[name] = FloatDistribution(float(dim.low), float(dim.high), log=dim.log,
                                          step=None if dim.log or dim.step is None else float(dim.step))
    return out


def head_for(family, config):
    """The head a task family puts on this model: its encoder or its decoder head, by the config."""
    from harness.models import is_decoder
    from harness.tasks.heads import HEADS

    return HEADS.get(family.head_for(is_decoder(config.model_type, getattr(config, "architectures", None) or ())))


def trial_training(suite: Suite, training_values: dict[str, Any]) -> TrialTraining:
    """A trial's training settings: the suite's, with the values its method entry or the search fixed."""
    return TrialTraining.model_validate({**suite.training.model_dump(), **training_values})
