"""The one place that reaches into Optuna's private attributes, and why each is needed.

Workers share trials through Optuna's RDB storage (runner/claims.py). The storage's own calls are
public (`record_heartbeat`, `get_trial`, `set_trial_user_attr`), but an `optuna.Study` keeps its
storage private (`study._storage`, wrapped in a cache) and an `optuna.Trial` its storage id
(`trial._trial_id`); neither has a public accessor. The public detour (looking the id up by study
name and trial number) costs two queries per heartbeat and returns the same id. A trial that never
beat has no public query at all: `beat_silent` reads the storage's heartbeat table model.
Checked against Optuna 5.1; if Optuna renames these, only this file changes."""

from __future__ import annotations


def storage_of(study):
    """The study's storage (the cache wrapper Optuna puts around an RDB storage: its calls pass through)."""
    return study._storage


def trial_id(trial) -> int:
    """A live or frozen trial's id in the storage."""
    return trial._trial_id


def record_heartbeat(study, trial) -> None:
    storage_of(study).record_heartbeat(trial_id(trial))


def frozen(study, trial):
    """The trial as stored now (its system attributes: retries; its user attributes: slot, config)."""
    return storage_of(study).get_trial(trial_id(trial))


def set_user_attr(study, trial, key: str, value) -> None:
    """A user attribute, also on a trial already told (Trial.set_user_attr refuses a finished one)."""
    storage_of(study).set_trial_user_attr(trial_id(trial), key, value)


def beat_silent(study) -> None:
    """Give a running trial that never beat a heartbeat now. Optuna never finds a trial without one
    stale, so a worker killed between claiming a trial and its first beat would leave it running for
    ever and its cell waiting; with one it goes stale after lost_after_s like any lost trial (a live
    worker's own beats overwrite it). Optuna has no public call for this: its storage's models do."""
    import optuna
    from optuna.storages._rdb import models

    storage = getattr(storage_of(study), "_backend", storage_of(study))  # under Optuna's cache wrapper
    if not isinstance(storage, optuna.storages.RDBStorage):
        return
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running:
        return
    session = storage.scoped_session()
    try:
        silent = [trial_id(t) for t in running
                  if models.TrialHeartbeatModel.where_trial_id(trial_id(t), session) is None]
    finally:
        session.close()
    for silent_id in silent:
        storage.record_heartbeat(silent_id)
