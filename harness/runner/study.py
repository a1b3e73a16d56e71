"""A cell's Optuna study as the sweep uses it: opened with its sampler and pruner (trial 0 enqueued
with the method's defaults, or a rung's promoted configurations), asked for pruning at the rungs,
told each trial's validation score, and given an interrupted trial back as a retry."""

from __future__ import annotations

from harness.plan import Cell, distributions, rungs
from harness.records.schema import TrialRecord
from harness.records.studies import StudyKey
from harness.runner import claims, halving
from harness.runner import optuna_private as private


def open_study(key: StudyKey, cell: Cell, cell_index: int, suite, store, storage, promote: list | None = None):
    """The study of this key in the store's Optuna storage, created (and initialised) by exactly one
    worker: a search study gets trial 0 with the method's defaults, a rung's study the configurations
    that go on (best first), a confirmation study nothing."""
    if promote is not None:
        first = [(dict(t.params), {halving.CONFIG: halving.config_number(t)}, False) for t in promote]
    elif key.phase == "search":
        defaults = trial_zero(cell, distributions(cell.space))
        first = [(defaults, {}, True)] if defaults else []
    else:
        first = []
    return claims.open_study(store.study_name(str(key)), storage, cell.direction, sampler(suite, cell_index),
                             pruner(suite), enqueue=first)


def trial_zero(cell: Cell, dists: dict) -> dict:
    """Trial 0 of every cell is the method's own known-good configuration: its defaults (and what the
    suite fixes) for each searched parameter that the search space can hold."""
    from optuna.distributions import CategoricalDistribution

    defaults = {}
    for name, dist in dists.items():
        value = cell.fixed.get(name)
        if value is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            inside = value in dist.choices
        else:
            inside = dist.low <= value <= dist.high
        if inside:
            defaults[name] = value
    return defaults


def sampler(suite, cell_index: int):
    import optuna

    seed = suite.search.seed + cell_index  # seeded from the suite; distinct per cell
    if suite.search.sampler in ("random", "none"):
        return optuna.samplers.RandomSampler(seed=seed)
    # Few trials per cell: let TPE start after a small random warm-up.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(3, suite.search.trials_per_cell))


def pruner(suite):
    """Optuna's own pruners on the validation scores reported at the rungs (plan.rungs)."""
    import optuna

    search, top = suite.search, suite.training.max_steps
    first = (rungs(suite) or [top])[0]
    if search.strategy == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=search.reduction_factor,
                                                      min_early_stopping_rate=0)
    if search.strategy == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=top,
                                              reduction_factor=search.reduction_factor)
    if search.strategy == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()  # none; sha, whose runs stop at their rung (pruning_hook's stop_at)


def pruning_hook(trial, stop_at: int | None = None):
    """Report each rung's validation score to Optuna; stop where its pruner says, or (sha: a run below
    the bracket's last rung, runner/halving.py) at the run's own rung."""
    def should_prune(value: float, step: int) -> bool:
        trial.report(value, step)
        return step >= stop_at if stop_at is not None else trial.should_prune()

    return should_prune


def never_prune(value: float, step: int) -> bool:
    """A confirmation run trains to the end: nothing is chosen from it."""
    return False


def interrupt(study, trial) -> None:
    """Fail an interrupted trial and enqueue it again as its retry (as Optuna does for a lost one)."""
    import optuna

    frozen = private.frozen(study, trial)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    history = [*frozen.system_attrs.get("retry_history", []), frozen.number]
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
        user_attrs=frozen.user_attrs, system_attrs={"failed_trial": history[0], "retry_history": history}))


def key_figures(record: TrialRecord) -> dict:
    """What optuna-dashboard shows beside each trial (user attributes): the record's status, test
    scores, memory, speed and size, so a study is readable without the harness."""
    out = {"status": record.status, "method": record.method, "cell": record.cell_id,
           "train_mib": round((record.memory.train_bytes or 0) / 2**20, 1),
           "train_tokens_per_s": round(record.throughput.train_tokens_per_s, 1),
           "train_s": round(record.timing.train_s, 2), "trainable_params": record.trainable_params}
    out.update({f"test_{k}": v for k, v in record.metrics.items()})
    if record.reason:
        out["reason"] = record.reason.splitlines()[0][:300]
    return out


def tell(study, trial, record: TrialRecord) -> None:
    """A search trial's outcome: its validation score (the test split informs no choice), pruned, or failed."""
    import optuna

    # the trial's last heartbeat may be seconds old (its record was being written): one more, so that
    # no other worker takes it for lost while its figures are stored
    private.record_heartbeat(study, trial)
    try:
        for key, value in key_figures(record).items():
            trial.set_user_attr(key, value)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # another worker already closed it as lost; its record (written above) stands

    if record.status == "complete" and record.selection_score is not None:
        study.tell(trial, record.selection_score)
    elif record.status == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def tell_confirmed(study, trial, record: TrialRecord) -> None:
    """A confirmation run's outcome: done (its value means nothing: no choice reads it) or failed."""
    import optuna

    if record.status == "complete":
        study.tell(trial, 0.0)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
