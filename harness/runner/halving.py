"""Synchronous successive halving (search.strategy: sha): every configuration of a cell is judged
together at each rung.

Optuna's SuccessiveHalvingPruner (strategy asha) is asynchronous: Optuna cannot suspend a trial and
resume it later, so it judges each trial as it reaches a rung, against the trials that reached the rung
before it. Run one after another it cannot stop the first trials (nothing to compare them with) and
promotes every trial better than those before it, so a cell of few trials saves little (figures:
docs/benchmarks.md, from benchmarks/multifidelity.py).
Successive halving as Jamieson & Talwalkar (2016) define it judges the whole bracket at once: all n
configurations train to the first rung, the best n / reduction_factor go on to the next, and so on;
once a single configuration is left it trains to max_steps. That rule is written here (Optuna has no
synchronous successive halving). Optuna still does the rest: its sampler proposes the configurations
(the first rung's study is the cell's study, so TPE learns from the first rung's scores), its storage
holds every run (one study per rung, `<cell>::rung<k>`, its trials enqueued with the promoted
configurations), and workers share each rung's runs through claims.py as they share any trials.

A configuration that goes on is trained again from step 0 with the same seed, not resumed from a
checkpoint: the learning-rate schedule runs over max_steps at every rung, so its first steps repeat
those of its run at the rung below, and no configuration waiting for its bracket keeps a model and
optimizer copy on disk (for full fine-tuning of a 7B model, about 84 GB each). The repeated steps are
compute spent: each record keeps its configuration's earlier runs (record.halving.earlier_runs) and
report/compute.py counts them. A configuration's record is its latest run.

A rung judges runs by search.rung_metric: by default the task's validation log-loss of the true label
(classification, QA), not its accuracy: early in training every configuration of a method may still
guess one class, so accuracy ranks them by which class they guess, while the log-loss moves with
every step of learning (docs/benchmarks.md has the run that showed it).

Steps are one fidelity; search.rung_max_length adds another where a suite asks: the runs below the last
rung truncate their examples to a shorter length (at_rung), so a step there costs less. A smaller
train_size is not offered as a fidelity: under a budget in steps, a step costs the same whatever pool
its batch is drawn from, so it would save nothing."""

from __future__ import annotations

from dataclasses import dataclass

from harness.plan import rungs
from harness.records.schema import TrialRecord

CONFIG = "harness:config"  # user attribute of a rung's trial: the configuration's trial number at rung 0


def applies(suite, cell) -> bool:
    """A cell searched under sha: more than one configuration of a method that trains."""
    return suite.search.strategy == "sha" and cell.budget > 1 and cell.method.trains


def stop_step(suite, rung: int, configurations: int) -> int:
    """Where this rung's runs stop: the rung's step (plan.rungs) while there is more than one
    configuration to judge and a rung left, else max_steps (the bracket's last runs)."""
    steps = rungs(suite)
    return steps[rung] if configurations > 1 and rung < len(steps) else suite.training.max_steps


def at_rung(suite, cell, stop: int):
    """The cell as a run that stops at `stop` trains it: under search.rung_max_length, a rung below the
    last truncates its examples (training and the validation that judges it) to the rung's length."""
    import dataclasses

    lengths = suite.search.rung_max_length
    if not lengths or stop == suite.training.max_steps or stop not in rungs(suite):
        return cell
    length = min(lengths[rungs(suite).index(stop)], cell.model.max_length)
    return dataclasses.replace(cell, model=cell.model.model_copy(update={"max_length": length}))


def kept(reached: int, reduction_factor: int) -> int:
    """How many of the configurations that reached a rung go on: the best 1/reduction_factor, at least one."""
    return max(1, reached // reduction_factor) if reached else 0


def bracket(suite, configurations: int) -> list[tuple[int, int]]:
    """(configurations, stop step) at each rung of a bracket where every run reaches its rung."""
    out, rung, n = [], 0, configurations
    while n:
        stop = stop_step(suite, rung, n)
        out.append((n, stop))
        if stop == suite.training.max_steps:
            break
        n, rung = kept(n, suite.search.reduction_factor), rung + 1
    return out


def planned_runs(suite, cell) -> int:
    """Runs the cell's search will take (its budget, where sha does not apply)."""
    return sum(n for n, _ in bracket(suite, cell.budget)) if applies(suite, cell) else cell.budget


def promoted(trials, step: int, direction: str, reduction_factor: int) -> list:
    """The trials of a rung's study that go on: the best by the validation score they reported at `step`
    (the cell's rung metric, in the study's direction: runner/trainer.py), ties in trial order. A run
    that failed before the rung has no score there and is out."""
    reached = [t for t in trials if step in t.intermediate_values]
    sign = -1 if direction == "maximize" else 1
    reached.sort(key=lambda t: (sign * t.intermediate_values[step], t.number))
    return reached[:kept(len(reached), reduction_factor)]


def config_number(trial) -> int:
    """The configuration a trial runs: its own number at rung 0, its rung-0 trial's number above."""
    return int(trial.user_attrs.get(CONFIG, trial.number))


@dataclass(frozen=True)
class Stage:
    """Where a run sits in its cell's bracket: the rung, the step its runs stop at, and how many
    configurations are judged together there."""

    rung: int
    stop: int
    configurations: int

    @classmethod
    def at(cls, suite, rung: int, configurations: int) -> "Stage":
        return cls(rung, stop_step(suite, rung, configurations), configurations)


def record_fields(record: TrialRecord, previous: TrialRecord | None, stage: Stage, reduction_factor: int) -> dict:
    """The record's halving field, carrying the configuration's earlier runs (its previous record and
    the runs that record carried), and, where a run stopped at its rung, a reason that says so."""
    earlier = [*((previous.halving or {}).get("earlier_runs", [])), previous.run_summary()] if previous is not None else []
    out = {"halving": {"rung": stage.rung, "stop_step": stage.stop, "bracket": stage.configurations,
                       "earlier_runs": earlier}}
    if record.status == "pruned" and record.stopped_at_step == stage.stop:
        out["reason"] = (f"stopped at rung {stage.rung + 1} (step {stage.stop}, validation {record.stopped_metric}="
                         f"{record.stopped_value:.4g}), where successive halving judges the {stage.configurations} "
                         f"configurations that reach it together and the best 1/{reduction_factor} go on (a "
                         f"configuration that goes on is recorded by its later run)")
    return out
