"""Expand a suite into cells (model x task x method), each with its search space and budget."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.config.schema import TRAINING_PARAMS, MethodEntry, ModelSpec, ParamSpace, Suite, TaskSpec
from harness.methods import METHODS, MethodSpec


@dataclass(frozen=True)
class Cell:
    model: ModelSpec
    task: TaskSpec
    entry: MethodEntry
    method: MethodSpec
    fixed: dict[str, Any]  # params every trial of this cell uses unless searched
    space: dict[str, ParamSpace]  # what Optuna searches
    budget: int  # trials; the same for every method

    @property
    def id(self) -> str:
        raw = f"{self.task.name}--{self.model.label}--{self.entry.display}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def confirm_seeds(suite: Suite) -> list[int]:
    """Seeds for the confirmation runs: the suite's seeds first, then following numbers."""
    k = suite.confirm.seeds
    seeds = list(suite.seeds[:k])
    nxt = max(suite.seeds) + 1
    while len(seeds) < k:
        seeds.append(nxt)
        nxt += 1
    return seeds


def training_defaults(suite: Suite) -> dict[str, Any]:
    t = suite.training
    return {name: getattr(t, name) for name in TRAINING_PARAMS}


def plan(suite: Suite) -> list[Cell]:
    cells = []
    for task in suite.tasks:
        for model in suite.models:
            for entry in suite.methods:
                method = METHODS.get(entry.name)
                fixed = {**training_defaults(suite), **method.defaults, **entry.params}
                space = {k: v for k, v in {**method.search_space, **entry.search}.items()
                         if k not in entry.params or k in entry.search}
                budget = suite.search.trials_per_cell
                if suite.search.sampler == "none":  # fixed configurations: defaults and params only
                    space, budget = {}, 1
                cells.append(Cell(model, task, entry, method, fixed, space, budget))
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
