"""How any number of workers share a suite's trials through Optuna's own storage (a SQLite file on
one machine, PostgreSQL across machines), with no scheduler of ours:

- a trial is claimed by `study.ask()`: the storage gives every new trial a unique number in one
  transaction, so no number runs twice;
- the budget holds however many workers race: a fresh trial's slot is the count of fresh,
  not-discarded trials numbered below it; a worker whose trial's slot is past the budget marks it
  discarded (user attribute) and fails it without running it. Numbers are handed out in order, so
  every worker computes the same slots;
- a worker that dies stops its trial's heartbeat (RDB storage's heartbeat, recorded by the worker
  while its trial process runs); the next worker to claim fails the stale trial and Optuna's
  RetryHeartbeatStaleTrialCallback enqueues it once more (max_retry=1) with the same parameters and
  user attributes: a retry takes its original's slot (and, for a confirmation, its seed); a second
  loss is recorded as crashed and not retried;
- confirmations are trials of a study of their own per chosen trial, claimed the same way once the
  cell's search is finished; a claim's slot picks its seed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.runner import optuna_private as private

DISCARDED = "harness:discarded"
SLOT = "harness:slot"
READY = "harness:ready"


def storage(url: str, heartbeat_s: float, lost_after_s: float, on_lost=None, create_lock: str | None = None):
    """Optuna's RDB storage with heartbeats; `on_lost(study, trial)` runs for each stale trial found
    (the callback writes its record) and says whether to enqueue a retry: not where the lost worker
    had written the trial's record and died before telling Optuna."""
    import optuna

    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)

    def stale(study, trial):
        if on_lost is None or on_lost(study, trial):
            retry(study, trial)

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        _wal(url)
    def make():
        return optuna.storages.RDBStorage(url, heartbeat_interval=max(int(heartbeat_s), 1),
                                          grace_period=max(int(lost_after_s), 1),
                                          heartbeat_stale_trial_callback=stale, engine_kwargs=engine)

    if url.startswith("sqlite"):
        # Optuna creates its tables on first open; local workers starting together raced on it (one
        # failed with "UNIQUE constraint failed: alembic_version"): one at a time, by a lock file beside it
        import fcntl
        from pathlib import Path

        with open(Path(url.removeprefix("sqlite:///")).with_suffix(".create-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return make()
    if create_lock is None:
        return make()
    from harness.records.pg import schema_lock

    with schema_lock(create_lock):  # Optuna creates its tables on first open; workers may start together
        return make()


def _wal(url: str) -> None:
    """SQLite in write-ahead-log mode: readers do not block the writer (several local workers)."""
    import sqlite3
    from pathlib import Path

    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=60) as db:
        db.execute("PRAGMA journal_mode=WAL")


def is_retry(trial) -> bool:
    return "failed_trial" in trial.system_attrs


def retried(trials) -> set[int]:
    """Numbers of trials another trial retries (their slot passed on)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def fresh(trial) -> bool:
    """A trial that takes a slot of the budget: not a retry (it keeps its original's), not discarded."""
    return not is_retry(trial) and DISCARDED not in trial.user_attrs


def slot_of(trial, trials) -> int:
    """A fresh trial's slot: the fresh trials numbered below it."""
    return sum(1 for t in trials if t.number < trial.number and fresh(t))


@dataclass
class Claim:
    trial: object  # optuna.Trial
    slot: int
    retry_of: int | None  # the number of the trial this one retries


def claim(study, dists: dict, budget: int) -> Claim | None:
    """The next trial of this study within its budget, or None when the budget is taken."""
    import optuna

    private.beat_silent(study)
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    taken = [t for t in trials if fresh(t)]
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
    if len(taken) >= budget and not waiting:
        return None
    trial = study.ask(dists)
    # A first heartbeat at once: Optuna only finds a trial stale once it has one, so a worker killed
    # between claiming and its trial's first beat would leave the trial running for ever.
    private.record_heartbeat(study, trial)
    frozen = private.frozen(study, trial)
    if is_retry(frozen):  # a lost trial run again: it keeps its original's slot
        return Claim(trial, int(frozen.user_attrs.get(SLOT, 0)), frozen.system_attrs["failed_trial"])
    slot = slot_of(frozen, study.get_trials(deepcopy=False))
    if slot >= budget:
        private.set_user_attr(study, trial, DISCARDED, f"over budget (slot {slot} of {budget})")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    private.set_user_attr(study, trial, SLOT, slot)
    return Claim(trial, slot, None)


def _slots(study) -> tuple[int, bool]:
    """(slots held by finished trials, whether any slot-holder still runs or waits)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    gone = retried(trials)
    holders = [t for t in trials if DISCARDED not in t.user_attrs and t.number not in gone]
    running = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    return len([t for t in holders if t.state not in running]), any(t.state in running for t in holders)


def finished(study, budget: int) -> bool:
    """Every slot of the budget is held by a finished trial (none running or waiting)."""
    done, running = _slots(study)
    return done >= budget and not running


def finished_slots(study) -> int:
    """How many slots finished trials hold; 0 while any slot-holder still runs or waits (a look at
    the scores must not read a seed half-run)."""
    done, running = _slots(study)
    return 0 if running else done


def open_study(name: str, storage_obj, direction: str, sampler, pruner, enqueue: tuple = (), wait_s: float = 30.0):
    """Create the study, or load it once its creator has initialized it: exactly one worker creates
    it and enqueues its first trials (`enqueue`: (params, user attributes, skip_if_exists) each: the
    method's defaults, or a rung's promoted configurations) once, however many race."""
    import optuna

    try:
        study = optuna.create_study(study_name=name, storage=storage_obj, direction=direction, sampler=sampler,
                                    pruner=pruner, load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage_obj, sampler=sampler, pruner=pruner)
        deadline = time.monotonic() + wait_s
        while not study.user_attrs.get(READY) and time.monotonic() < deadline:
            time.sleep(0.2)
        return study
    for params, user_attrs, skip_if_exists in enqueue:
        study.enqueue_trial(params, user_attrs=user_attrs or None, skip_if_exists=skip_if_exists)
    study.set_user_attr(READY, True)
    return study


def heartbeat(study, trial, every_s: float) -> callable:
    """A function to call often while the trial runs: records its heartbeat every every_s seconds."""
    last = [0.0]

    def beat() -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            private.record_heartbeat(study, trial)

    return beat
