"""The claim loop of one worker in its sweep process: every cell in order, its search trials claimed
from the cell's study (rung by rung under successive halving), then the best configuration's
confirmation runs; each trial run in its own process (or inline), and its record written once."""

from __future__ import annotations

import os
import socket
import time
from functools import partial
from pathlib import Path

from harness.errors import UserError
from harness.measure.provenance import text_hash
from harness.plan import Cell, confirm_seeds, distributions, plan, search_seed
from harness.records.schema import TrialRecord
from harness.records.select import best_search_trial
from harness.records.studies import StudyKey
from harness.runner import claims, halving, study as studies
from harness.runner.fitting import Fitting, backed_off, skipped_reason
from harness.runner.isolation import failure_record, run_inline, run_isolated
from harness.runner.jobs import make_job
from harness.runner.leases import DEVICES_ENV, DevicePool, parse_devices
from harness.runner.prepare import Preparer, pick_device
from harness.runner.progress import Progress
from harness.runner.recovery import Recovery
from harness.runner.record import amend, now
from harness.runner.trial import TrialHooks
from harness.sequential import Plan, looks, schedule
from harness.spec import LoadedSuite


class Worker:
    """Claims and runs trials (runner/claims.py); what it shares across its cells: the store, the
    prepared data and models (runner/prepare.py), the device and its predictions (runner/fitting.py)."""

    def __init__(self, loaded: LoadedSuite, store, view: Progress, name: str | None = None):
        suite = loaded.suite
        self.suite, self.store, self.view = suite, store, view
        self.name = f"{socket.gethostname()}:{os.getpid()}" + (f":{name}" if name else "")
        self.device = pick_device(suite.training.device)
        self.preparer = Preparer(loaded.base_dir, seed=suite.search.seed, max_examples=suite.runner.max_examples)
        self.cells, self.seeds = plan(suite), confirm_seeds(suite)
        self.studies: dict[str, tuple[Cell, StudyKey]] = {}  # the storage's study name -> its cell and key
        self.skipped: set[str] = set()  # cells whose unrun confirmations were counted once in the view
        # confirm.seeds: auto: each cell whose search this worker saw finished -> its chosen trial (None:
        # nothing completed), and the confirmation studies it opened to read the group's looks
        self.searched: dict[str, int | None] = {}
        self.confirming: dict[str, object] = {}
        self.fitting = Fitting(self.device, suite.runner.memory_limit)
        # the machine's devices this worker leases to its trials, one set per trial (harness run --gpus)
        pool = os.environ.get(DEVICES_ENV)
        self.pool = DevicePool(parse_devices(pool)) if pool else None
        self.fitting.devices = len(self.pool.devices) if self.pool else None
        self.recovery = Recovery(self)
        self.storage = claims.storage(store.study_storage_url, suite.runner.heartbeat_s, suite.runner.lost_after_s,
                                      on_lost=self.recovery.record_lost, create_lock=getattr(store, "url", None))
        tracking_root = str(Path(store.root) / "tracking")
        # a trial's job: the cell, the trial's number, seed and parameters (runner/jobs.py)
        self.job = partial(make_job, loaded, device=self.device, suite_hash=text_hash(loaded.text),
                           tracking_root=tracking_root, results_root=str(store.root))
        if "mlflow" in suite.tracking.report_to:
            from harness.runner.tracking import prepare_mlflow

            prepare_mlflow(tracking_root, suite.name)

    def run(self) -> None:
        """Every cell in order, claiming what is left of it; cells other workers still hold are
        visited again until every one is done."""
        pending = list(enumerate(self.cells))
        while pending:
            waiting = [(index, cell) for index, cell in pending if not self.work_on(index, cell)]
            if waiting:
                time.sleep(1.0)  # other workers hold the rest; their trials finish or go stale
            pending = waiting

    def work_on(self, index: int, cell: Cell) -> bool:
        """Claim and run this cell's trials; True once the cell is done (search and confirmations)."""
        search = self.open(StudyKey(cell.id), cell, index)
        dists = distributions(cell.space)
        if halving.applies(self.suite, cell):
            if not self.halve(index, cell, search, dists):
                return False
        else:
            while (got := claims.claim(search, dists, cell.budget)) is not None:
                self.search_trial(index, cell, search, got)
            if not claims.finished(search, cell.budget):
                return False
        if not self.seeds or not cell.confirms:
            return True
        best = best_search_trial(self.store.load_cell(cell.id), cell.direction)
        self.searched[cell.id] = None if best is None else best.trial_number
        if best is None:
            if cell.id not in self.skipped:  # nothing completed, nothing to confirm; the failures are on record
                self.skipped.add(cell.id)
                self.view.skip(len(self.seeds))
            return True
        confirm = self.confirm_study(cell, best.trial_number)
        while True:  # under seeds: auto the plan grows at each look; fixed seeds: one pass
            plan = self.seed_plan(cell)
            budget = plan.target[cell.method_label]
            while (got := claims.claim(confirm, {}, budget)) is not None:
                self.confirm_trial(cell, confirm, got, best, plan)
            if not claims.finished(confirm, budget):
                return False
            plan = self.seed_plan(cell)
            if plan.target[cell.method_label] > budget:
                continue
            if plan.settled and cell.id not in self.skipped:  # the seeds auto left unrun, once
                self.skipped.add(cell.id)
                self.view.skip(len(self.seeds) - budget)
            return plan.settled

    def confirm_study(self, cell: Cell, trial_number: int):
        if cell.id not in self.confirming:
            self.confirming[cell.id] = self.open(StudyKey.confirming(cell.id, trial_number), cell,
                                                 self.cells.index(cell))
        return self.confirming[cell.id]

    def seed_plan(self, cell: Cell) -> Plan:
        """How many confirmation seeds each method of this cell's task x model runs, and why each
        (harness/sequential.py): fixed seeds, every method all of them; seeds: auto, the rule replayed
        from the records and the studies, so every worker, and a resumed sweep, reads the same plan.
        Which methods get more seeds is a choice, so the looks read the seeds' validation scores; the
        test split only reports. A look waits until every method of the task x model has finished its search and its seeds."""
        n = len(self.seeds)
        if not self.suite.confirm.auto:
            why = f"confirm.seeds = {n}: every method runs the same {n} seeds"
            key = cell.method_label
            return Plan({key: n}, {key: {s: why for s in range(n)}}, {key: {s: 1 for s in range(n)}}, True)
        group = [c for c in self.cells if c.confirms and self.searched.get(c.id, -1) is not None
                 and (c.task_label, c.model.label) == (cell.task_label, cell.model.label)]
        scores, finished = {}, {}  # by method label: unique within a task x model
        for c in group:
            scores[c.method_label] = {}
            number = self.searched.get(c.id, -1)
            if number == -1:  # this worker has not seen its search finish yet: the look waits for it
                finished[c.method_label] = 0
                continue
            for r in self.store.load_cell(c.id):
                if r.phase == "confirm" and r.trial_number == number and r.seed in self.seeds:
                    slot = self.seeds.index(r.seed)
                    if r.status == "complete" and r.selection_score is not None:  # validation: a choice
                        scores[c.method_label][slot] = r.selection_score
            finished[c.method_label] = claims.finished_slots(self.confirm_study(c, number))
        confirm = self.suite.confirm
        return schedule(scores, finished, looks(confirm.min_seeds, confirm.max_seeds, confirm.looks),
                        self.suite.decision.tolerance, cell.direction == "maximize")

    def confirmation(self, plan: Plan, cell: Cell, slot: int) -> dict:
        """What a confirmation record says about why its seed was run."""
        key = cell.method_label
        return {"rule": "auto" if self.suite.confirm.auto else "fixed", "slot": slot,
                "look": plan.look[key].get(slot, 1), "looks": plan.looks, "level": plan.level,
                "why": plan.why[key].get(slot, "")}

    def halve(self, index: int, cell: Cell, study, dists) -> bool:
        """The cell's synchronous successive-halving bracket (runner/halving.py), rung by rung: each
        rung's runs are claimed like any trials; once every one is finished, the best go on to the next
        rung's study. True once the last rung is finished. Every worker reads the same finished rung
        from the storage, so all promote the same configurations, and a sweep killed mid-bracket
        continues at the rung it stopped in."""
        stage = halving.Stage.at(self.suite, 0, cell.budget)
        while True:
            while (got := claims.claim(study, dists, stage.configurations)) is not None:
                self.search_trial(index, cell, study, got, stage)
            if not claims.finished(study, stage.configurations):
                return False
            if stage.stop == self.suite.training.max_steps:
                return True
            chosen = halving.promoted(study.get_trials(deepcopy=False), stage.stop, cell.direction,
                                      self.suite.search.reduction_factor)
            if not chosen:  # no run reached the rung: their records say why
                return True
            stage = halving.Stage.at(self.suite, stage.rung + 1, len(chosen))
            study = self.open(StudyKey(cell.id, rung=stage.rung), cell, index, promote=chosen)

    def open(self, key: StudyKey, cell: Cell, index: int, promote: list | None = None):
        self.studies[self.store.study_name(str(key))] = (cell, key)
        return studies.open_study(key, cell, index, self.suite, self.store, self.storage, promote)

    def search_trial(self, index: int, cell: Cell, study, got, stage: halving.Stage | None = None) -> None:
        """One search trial; under sha the trial runs the configuration its rung's study was given, to
        the stage's stop step."""
        trial, suite = got.trial, self.suite
        number = halving.config_number(trial)
        artifacts = (str(self.store.root / "adapters" / cell.id / f"trial-{number:04d}")
                     if suite.output.keep_adapters else None)
        job = self.job(halving.at_rung(suite, cell, stage.stop) if stage else cell, trial_number=number,
                       seed=search_seed(suite), sampled=dict(trial.params), artifact_dir=artifacts)
        again = f" (again: trial {got.retry_of}'s worker was lost)" if got.retry_of is not None else ""
        label, stop_at = f"trial {got.slot + 1}/{cell.budget}", None
        if stage is not None:
            label = (f"rung {stage.rung + 1} (to step {stage.stop}) configuration {number}, "
                     f"{got.slot + 1}/{stage.configurations}")
            stop_at = stage.stop if stage.stop < suite.training.max_steps else None
        self.view.start_trial(f"[{index + 1}/{len(self.cells)}] {cell.id} {label}{again}", suite.training.max_steps)
        hooks = TrialHooks(self.view.on_progress, studies.pruning_hook(trial, stop_at),
                           claims.heartbeat(study, trial, suite.runner.heartbeat_s))
        record = self.trial(job, hooks, study, trial, stage)
        self.store.write(record)
        studies.tell(study, trial, record)
        self.view.end_trial(record)

    def confirm_trial(self, cell: Cell, study, got, best, plan: Plan) -> None:
        seed = self.seeds[got.slot]
        why = self.confirmation(plan, cell, got.slot)
        of = f"{got.slot + 1}/{len(self.seeds)}" if why["rule"] == "fixed" else f"{got.slot + 1}, look {why['look']}"
        self.view.start_trial(f"{cell.id} confirm trial {best.trial_number} seed {seed} ({of})",
                              self.suite.training.max_steps)
        job = self.job(cell, trial_number=best.trial_number, seed=seed, params=best.params, phase="confirm",
                       confirm_slot=got.slot)
        hooks = TrialHooks(self.view.on_progress, studies.never_prune,
                           claims.heartbeat(study, got.trial, self.suite.runner.heartbeat_s))
        record = self.trial(job, hooks, study, got.trial, confirmation=why)
        self.store.write(record)
        studies.tell_confirmed(study, got.trial, record)
        self.view.end_trial(record)

    def trial(self, job, hooks, study=None, trial=None, stage: halving.Stage | None = None,
              confirmation: dict | None = None) -> TrialRecord:
        """Run one job in its own process (or inline), fitted to the device first (runner/fitting.py);
        a cell whose data or model cannot be prepared gets a failed record per trial, and the sweep goes
        on. Ctrl-C: the running trial is recorded as interrupted and enqueued again, so the next run
        continues it. Every path ends in `sweep_facts`, which adds what only the sweep knows."""
        started = now()
        sweep_facts = partial(self.sweep_facts, confirmation=confirmation)
        try:
            prepared = self.preparer.get(job.cell.model, job.cell.task)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001
            return sweep_facts(failure_record(job, f"preparing {job.cell.model.label} / {job.cell.task.name} "
                                                   f"failed: {type(exc).__name__}: {exc}"[:4000], started,
                                              status="failed"), job, stage)
        job, predicted = self.fitting.predict(job, prepared)
        hooks.tick()  # a first prediction of a large model takes seconds; the claim stays alive
        if predicted is not None and predicted.fits is False:
            record = failure_record(job, skipped_reason(predicted), started, status="skipped")
            return sweep_facts(record, job, stage, estimate=predicted.to_json())

        lease = None
        if self.pool is not None:
            if job.ranks > len(self.pool.devices):
                record = failure_record(job, f"needs {job.ranks} devices ({job.strategy} x{job.ranks}); this worker "
                                             f"leases from {len(self.pool.devices)} (--gpus "
                                             f"{','.join(self.pool.devices)})", started, status="skipped")
                return sweep_facts(record, job, stage)
            try:
                lease = self.pool.lease(job.ranks, hooks.tick, lambda held: self.view.status(
                    f"{job.cell.id} trial {job.trial_number}: waiting for {job.ranks} free devices"))
            except KeyboardInterrupt:
                self.interrupted(job, started, sweep_facts, stage, study, trial, " while waiting for devices")
                raise
            job = job.on_devices(lease.devices)
        attempts = []
        try:
            while True:
                if self.suite.runner.isolation == "process":
                    record = run_isolated(job, prepared, hooks, self.suite.runner.trial_timeout_s)
                else:
                    record = run_inline(job, prepared, hooks)
                smaller = backed_off(record, job, self.suite.runner.oom_backoff)
                if smaller is None:
                    break
                micro = job.training.micro_batch
                attempts.append({"micro_batch_size": micro, "status": record.status, "reason": record.reason})
                self.view.status(f"{job.cell.id} trial {job.trial_number}: out of memory at micro-batch {micro}, "
                                 f"again at {smaller.training.micro_batch}")
                job = smaller
        except KeyboardInterrupt:
            self.interrupted(job, started, sweep_facts, stage, study, trial)
            raise
        finally:
            if lease is not None:
                lease.release()
        if "mlflow" in job.report_to:  # written here, from the record: a trial process never opens the store
            from harness.runner.tracking import log_to_mlflow

            spent = log_to_mlflow(record, job.tracking_root)
            record = amend(record, timing=record.timing.model_copy(update={"tracking_s": record.timing.tracking_s + spent}))
        return sweep_facts(record, job, stage, attempts=attempts, estimate=self.fitting.recorded(job, predicted))

    def interrupted(self, job, started: str, sweep_facts, stage, study, trial, where: str = "") -> None:
        """Ctrl-C or SIGTERM during a trial: its record says so, and its Optuna trial is enqueued again."""
        record = failure_record(job, f"interrupted (Ctrl-C or SIGTERM){where}; enqueued again, so running the same "
                                     f"command continues it", started, status="interrupted")
        self.store.write(sweep_facts(record, job, stage))
        if study is not None and trial is not None:
            studies.interrupt(study, trial)

    def sweep_facts(self, record: TrialRecord, job, stage: halving.Stage | None = None,
                    confirmation: dict | None = None, **facts) -> TrialRecord:
        """The record with what only the sweep knows: the worker, the out-of-memory attempts and the
        prediction where the trial ran, under sha its rung and the configuration's earlier runs, and for
        a confirmation run why its seed was run."""
        facts["worker"] = self.name
        if job.devices:
            facts["devices"] = list(job.devices)
        if confirmation is not None:
            facts["confirmation"] = confirmation
        if stage is not None:
            previous = self.recovery.search_record(job.cell, job.trial_number)
            facts.update(halving.record_fields(record, previous, stage, self.suite.search.reduction_factor))
        return amend(record, **facts)
