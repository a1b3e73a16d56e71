"""Lost trials: a trial whose worker stopped beating (killed, machine lost) gets a `crashed` record
before Optuna enqueues it once more (runner/claims.py), unless its record was already written."""

from __future__ import annotations

from harness.plan import Cell, search_seed
from harness.records.schema import TrialRecord
from harness.runner import claims, halving
from harness.runner.isolation import failure_record
from harness.runner.record import now


class Recovery:
    """Called by Optuna's storage (claims.storage's on_lost) from inside a worker's claim."""

    def __init__(self, worker):
        self.worker = worker  # its store, suite, seeds, studies and job factory

    def record_lost(self, study, trial) -> bool:
        """Write the lost trial's record; whether to enqueue a retry (once only: a lost retry is not
        retried again). A worker killed after writing the trial's record and before telling Optuna lost
        nothing: the record stays, no retry."""
        w = self.worker
        found = w.studies.get(study.study_name)
        if found is None:
            return True
        cell, key = found
        if self.already_recorded(key, cell, trial):
            return False
        retried = len(trial.system_attrs.get("retry_history", [])) < 1
        reason = (f"its worker was lost (no heartbeat for {w.suite.runner.lost_after_s:g} s): "
                  + ("run again as a new trial" if retried else "not run again (it was itself a retry)"))
        stage = None
        if key.phase == "confirm":
            params = getattr(self.search_record(cell, key.trial), "params", {})
            job = w.job(cell, trial_number=key.trial, seed=w.seeds[int(trial.user_attrs.get(claims.SLOT, 0))],
                        params=params, phase="confirm")
        else:
            if halving.applies(w.suite, cell):
                configurations = cell.budget if not key.rung else sum(
                    1 for t in study.get_trials(deepcopy=False) if claims.fresh(t))
                stage = halving.Stage.at(w.suite, key.rung, configurations)
            job = w.job(halving.at_rung(w.suite, cell, stage.stop) if stage else cell,
                        trial_number=halving.config_number(trial), seed=search_seed(w.suite),
                        sampled=dict(trial.params))
        started = trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else now()
        w.store.write(w.sweep_facts(failure_record(job, reason, started, status="crashed"), job, stage))
        return True

    def search_record(self, cell: Cell, number: int) -> TrialRecord | None:
        """The search record of this trial number (under sha: its configuration's latest run), if any."""
        return next((r for r in self.worker.store.load_cell(cell.id)
                     if r.phase == "search" and r.trial_number == number), None)

    def already_recorded(self, key, cell: Cell, trial) -> bool:
        w = self.worker
        records = [r for r in w.store.load_cell(cell.id) if r.status != "crashed"]  # crashed: a loss on record
        if key.phase == "confirm":
            seed = w.seeds[int(trial.user_attrs.get(claims.SLOT, 0))]
            return any(r.phase == "confirm" and r.trial_number == key.trial and r.seed == seed for r in records)
        if halving.applies(w.suite, cell):  # sha: this rung's run of it
            return any(r.phase == "search" and r.trial_number == halving.config_number(trial)
                       and (r.halving or {}).get("rung") == key.rung for r in records)
        return any(r.phase == "search" and r.trial_number == trial.number for r in records)
