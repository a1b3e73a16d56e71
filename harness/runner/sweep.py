"""Sweep a suite: one Optuna study per cell, the same trial budget for every method, one record per
trial, then confirmation runs of each cell's best configuration. Running the same suite again
resumes: finished trials are kept. The runner reports progress through runner/progress.py and
never publishes: `harness run` hands the records to report/publish.py."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from harness.errors import UserError
from harness.measure.provenance import text_hash
from harness.records.schema import TrialRecord
from harness.records.select import best_search_trial, skipped_cells
from harness.records.store import RecordStore
from harness.runner import claims, halving
from harness.runner.plan import Cell, confirm_seeds, distributions, plan, rungs, search_seed, smoke_suite
from harness.runner.progress import Progress
from harness.spec import LoadedSuite

# Keys that may change between runs into the same results folder without making its trials
# incomparable: the budget (raising it resumes the search), seeds added, where output goes.
RESUMABLE_KEYS = {("search", "trials_per_cell"), ("confirm", "seeds"), ("output",), ("runner",), ("description",)}


@dataclass(frozen=True)
class SweepOutcome:
    loaded: LoadedSuite  # as run (--smoke runs a derived suite)
    store: RecordStore
    cells: list[Cell]
    elapsed_s: float


def prepare_run(loaded: LoadedSuite, results_root: str | None, smoke: bool) -> tuple[LoadedSuite, Path]:
    """The suite as it will run and its results root (--smoke: a derived suite in a fresh folder)."""
    if smoke:
        loaded = LoadedSuite(smoke_suite(loaded.suite), loaded.path, loaded.text)
    root = Path(results_root) if results_root else Path(loaded.suite.output.results_dir)
    if smoke:
        import shutil

        shutil.rmtree(root / loaded.suite.name, ignore_errors=True)  # a smoke run always starts afresh
    return loaded, root


def planned_trials(loaded: LoadedSuite, done: int = 0) -> int:
    """Trials the run will run: every cell's budget and confirmations, less what is already done."""
    seeds = len(confirm_seeds(loaded.suite))
    return max(sum(halving.planned_runs(loaded.suite, c) + (seeds if c.confirms else 0)
                   for c in plan(loaded.suite)) - done, 0)


def log_file(loaded: LoadedSuite, root: Path) -> Path:
    """Where a run's library chatter goes (runner/logs.py): results/<suite>/run.log."""
    return root / loaded.suite.name / "run.log"


def run_sweep(loaded: LoadedSuite, root: Path, view: Progress, workers: int = 1, gpus: list[str] | None = None,
              storage_url: str | None = None, verbose: bool = False) -> SweepOutcome:
    """Run every cell of the suite into root/<suite name> (or the PostgreSQL storage), with one
    worker, `workers` workers, or one worker per GPU in `gpus` (CUDA_VISIBLE_DEVICES).

    With process isolation each worker runs in a freshly spawned sweep process: trials are forked
    from it, and fork is only safe from a process that never ran OpenMP-parallel torch code
    (a forked child of one that did can hang in its first parallel op). This process may have
    (a notebook, a test run); the spawned one never computes."""
    from harness.runner.server import run_in_sweep_processes

    preflight(loaded, root, storage_url)
    t0 = time.perf_counter()
    from harness.runner.logs import LOG_ENV, VERBOSE_ENV

    chatter = {VERBOSE_ENV: "1"} if verbose else {LOG_ENV: str(log_file(loaded, root).resolve())}
    envs = ([{"CUDA_VISIBLE_DEVICES": g, **chatter} for g in gpus] if gpus
            else [dict(chatter) for _ in range(max(workers, 1))])
    if loaded.suite.runner.isolation == "process":
        run_in_sweep_processes(sweep, [((loaded, root), {"storage_url": storage_url, "worker": _name(i, env)}, env)
                                       for i, env in enumerate(envs)], view)
    else:
        sweep(loaded, root, view, storage_url=storage_url)
    return SweepOutcome(loaded, open_store(loaded.suite.name, root, storage_url), plan(loaded.suite),
                        time.perf_counter() - t0)


def _name(i: int, env: dict) -> str:
    """What a worker is called beside its host and process id (Worker adds those)."""
    return f"worker{i}" + (f":gpu{env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in env else "")


MIN_FREE_BYTES = 512 * 2**20


def preflight(loaded: LoadedSuite, root: Path, storage_url: str | None) -> None:
    """Before any trial: the storage answers, the results folder takes a file, the disk has room.
    Each failure is exit 2, with nothing written."""
    import shutil
    import tempfile

    from harness.records.pg import connect, is_postgres

    problems = []
    if storage_url and not is_postgres(storage_url):
        problems.append(f"--storage {storage_url}: only postgresql:// URLs are supported (the default is a SQLite "
                        f"file in the results folder)")
    elif is_postgres(storage_url):
        try:
            connect(storage_url).close()
        except UserError as err:
            problems += [p.message for p in err.problems]
    folder = root / loaded.suite.name
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".harness-write-test-"):
            pass
    except OSError as exc:
        problems.append(f"{folder}: results cannot be written there ({exc.strerror or exc})")
    else:
        free = shutil.disk_usage(probe).free
        if free < MIN_FREE_BYTES:
            problems.append(f"{folder}: only {free / 2**20:.0f} MiB free on its disk; a sweep needs at least "
                            f"{MIN_FREE_BYTES / 2**20:.0f} MiB for records, the Optuna storage and the data cache")
    if problems:
        raise UserError(problems)


def cells_verdict(outcome: SweepOutcome, records: list[TrialRecord], smoke: bool = False) -> int:
    """Exit 1 where a cell ended with no complete trial (its records say why), 0 otherwise."""
    complete = {r.cell_id for r in records if r.status == "complete" and r.phase == "search"}
    # a cell predicted not to fit was never started: listed, and not a failure of the run
    skipped = skipped_cells(records)
    for cell in outcome.cells:
        if cell.id in skipped:
            print(f"cell {cell.id} skipped: {skipped[cell.id]}", file=sys.stderr)
    missing = [c.id for c in outcome.cells if c.id not in complete and c.id not in skipped]
    for cell_id in missing:
        reasons = sorted({f"{r.status}: {(r.reason or '').splitlines()[0][:160]}" for r in records
                          if r.cell_id == cell_id and r.status != "complete"}) or ["no trial ran"]
        print(f"cell {cell_id} has no complete trial ({'; '.join(reasons)})", file=sys.stderr)
    if missing:
        print(f"{len(missing)} of {len(outcome.cells)} cells have no complete trial: exit 1", file=sys.stderr)
        return 1
    if smoke:
        from harness.runner.plan import SMOKE_EXAMPLES, SMOKE_STEPS

        print(f"smoke: all {len(outcome.cells)} cells trained, validated and were scored on test ({SMOKE_STEPS} steps "
              f"on {SMOKE_EXAMPLES} examples: the numbers above only show that each cell runs)")
    return 0


def _comparable(text: str) -> dict:
    import yaml

    data = yaml.safe_load(text) or {}
    for path in RESUMABLE_KEYS:
        holder = data
        for key in path[:-1]:
            holder = holder.get(key) or {} if isinstance(holder, dict) else {}
        if isinstance(holder, dict):
            holder.pop(path[-1], None)
    return data


def check_resumable(store, text: str) -> None:
    """Refuse to mix trials of two different suites in one results set (a changed model, task,
    method, search space or training setting makes the old trials incomparable with new ones)."""
    if hasattr(store, "saved_suite"):  # PostgreSQL
        previous, where, has_records = store.saved_suite(), store.where, bool(store.load_all())
    else:
        path = store.root / "suite.yaml"
        previous = path.read_text(encoding="utf-8") if path.exists() else None
        where, has_records = str(path), bool(list((store.root / "records").glob("*/*.json")))
    if previous is not None and has_records and _comparable(previous) != _comparable(text):
        raise UserError(f"{store.root if not hasattr(store, 'saved_suite') else where} holds trials of a different "
                        f"version of this suite (saved as {where}); only the budget, seeds and output settings may "
                        f"change on a resume. Run into another folder (--results DIR) or remove that one.")


def sweep(loaded: LoadedSuite, root: Path, view: Progress, storage_url: str | None = None,
          worker: str | None = None) -> None:
    """One worker, in its sweep process: claims trials of every cell until each cell's budget and
    confirmations are done, forking each trial from here. Any number of these share a suite."""
    from harness.models import configure_hub_access

    suite = loaded.suite
    configure_hub_access(list(suite.models), [t.data.hub.name for t in suite.tasks if t.data.hub is not None])
    from harness.runner.stack import preload, quiet_libraries

    quiet_libraries()
    store = open_store(suite.name, root, storage_url)
    check_resumable(store, loaded.text)
    store.load_all()  # a results set with a record that cannot be read stops here, before any trial
    save_suite(store, loaded.text)
    preload(suite.tracking.report_to)
    Worker(loaded, store, view, worker).run()


def open_store(suite_name: str, root: Path, storage_url: str | None):
    """The results set: files under root/<suite> (Optuna in a SQLite file beside them), or a table
    of the PostgreSQL database that also holds the studies."""
    from harness.records.pg import PgRecordStore, is_postgres

    if is_postgres(storage_url):
        return PgRecordStore(storage_url, suite_name, root / suite_name)
    return RecordStore(root / suite_name)


def save_suite(store, text: str) -> None:
    if hasattr(store, "save_suite"):
        store.save_suite(text)
    else:
        store.root.mkdir(parents=True, exist_ok=True)
        (store.root / "suite.yaml").write_text(text, encoding="utf-8")


class Worker:
    """Claims and runs trials (harness/runner/claims.py); the state it shares across its cells:
    store, prepared data and models, device."""

    def __init__(self, loaded: LoadedSuite, store, view: Progress, name: str | None = None):
        import os
        import socket

        from harness.runner.prepare import Preparer, pick_device

        suite = loaded.suite
        self.loaded, self.suite, self.store, self.view = loaded, suite, store, view
        self.name = f"{socket.gethostname()}:{os.getpid()}" + (f":{name}" if name else "")
        self.suite_hash = text_hash(loaded.text)
        self.device = pick_device(suite.training.device)
        self.preparer = Preparer(loaded.base_dir, seed=suite.search.seed, max_examples=suite.runner.max_examples)
        self.cells = plan(suite)
        self.by_study: dict[str, Cell] = {}
        self.storage = claims.storage(store.study_storage_url, suite.runner.heartbeat_s, suite.runner.lost_after_s,
                                      on_lost=self.record_lost, create_lock=getattr(store, "url", None))
        self.seeds = confirm_seeds(suite)
        self.skipped: set[str] = set()
        self.estimates: dict[tuple, object] = {}
        self.longest: dict[tuple, int] = {}  # (cell, max_length) -> the sequence length its predictions assume
        self.estimate_error: dict[str, dict] = {}
        # where the estimate fits cells (the device, its memory), read before any claim: the CPU's
        # allocator probe takes seconds once per host, with no heartbeat running
        self.target, self.target_error = None, ""
        try:
            self.target = self.make_target()
        except Exception as exc:  # noqa: BLE001 - no estimate then; trials run as they would have
            self.target_error = f"{type(exc).__name__}: {exc}"
        self.tracking_root = str(Path(store.root) / "tracking")
        if "mlflow" in suite.tracking.report_to:
            from harness.runner.tracking import prepare_mlflow

            prepare_mlflow(self.tracking_root, suite.name)

    def run(self) -> None:
        """Every cell in order, claiming what is left of it; cells other workers still hold are
        visited again until every one is done."""
        pending = list(enumerate(self.cells))
        while pending:
            waiting = []
            for index, cell in pending:
                if not self.work_on(index, cell):
                    waiting.append((index, cell))
            if waiting:
                time.sleep(1.0)  # other workers hold the rest; their trials finish or go stale
            pending = waiting

    def work_on(self, index: int, cell: Cell) -> bool:
        """Claim and run this cell's trials; True once the cell is done (search and confirmations)."""
        search = self.study(cell.id, cell, index)
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
        if best is None:
            if cell.id not in self.skipped:  # nothing completed, nothing to confirm; the failures are on record
                self.skipped.add(cell.id)
                self.view.skip(len(self.seeds))
            return True
        confirm = self.study(f"{cell.id}::confirm-t{best.trial_number:04d}", cell, index, confirming=True)
        while (got := claims.claim(confirm, {}, len(self.seeds))) is not None:
            self.confirm_trial(cell, confirm, got, best)
        return claims.finished(confirm, len(self.seeds))

    def halve(self, index: int, cell: Cell, study, dists) -> bool:
        """The cell's synchronous successive-halving bracket (runner/halving.py), rung by rung: each
        rung's runs are claimed like any trials; once every one is finished, the best go on to the next
        rung's study. True once the last rung is finished. Every worker reads the same finished rung
        from the storage, so all promote the same configurations, and a sweep killed mid-bracket
        continues at the rung it stopped in."""
        rung, configurations, top = 0, cell.budget, self.suite.training.max_steps
        while True:
            stop = halving.stop_step(self.suite, rung, configurations)
            while (got := claims.claim(study, dists, configurations)) is not None:
                self.search_trial(index, cell, study, got, stage=(rung, stop, configurations))
            if not claims.finished(study, configurations):
                return False
            if stop == top:
                return True
            chosen = halving.promoted(study.get_trials(deepcopy=False), stop, cell.direction,
                                      self.suite.search.reduction_factor)
            if not chosen:  # no run reached the rung: their records say why
                return True
            rung, configurations = rung + 1, len(chosen)
            study = self.study(f"{cell.id}{halving.RUNG_STUDY}{rung}", cell, index, promote=chosen)

    def study(self, name: str, cell: Cell, index: int, confirming: bool = False, promote: list | None = None):
        def initialize(study):
            if promote is not None:  # a rung's study: the configurations that go on, best first
                for t in promote:
                    study.enqueue_trial(dict(t.params), user_attrs={halving.CONFIG: halving.config_number(t)})
            elif not confirming:
                _enqueue_defaults(study, cell, distributions(cell.space))

        name = self.store.study_name(name)
        self.by_study[name] = cell
        return claims.open_study(name, self.storage, cell.direction, _sampler(self.suite, index), _pruner(self.suite),
                                 initialize=initialize)

    def job(self, cell: Cell, **kwargs):
        from harness.runner.jobs import make_job

        return make_job(self.loaded, cell, device=self.device, suite_hash=self.suite_hash,
                        tracking_root=self.tracking_root, **kwargs)

    def search_trial(self, index: int, cell: Cell, study, got, stage: tuple[int, int, int] | None = None) -> None:
        """One search trial; under sha, `stage` is (rung, the step its runs stop at, configurations judged
        there) and the trial runs the configuration its rung's study was given."""
        from harness.runner.trial import TrialHooks

        trial, suite = got.trial, self.suite
        number = halving.config_number(trial)
        artifacts = (str(self.store.root / "adapters" / cell.id / f"trial-{number:04d}")
                     if suite.output.keep_adapters else None)
        job = self.job(halving.at_rung(suite, cell, stage[1]) if stage else cell, trial_number=number,
                       seed=search_seed(suite), sampled=dict(trial.params), artifact_dir=artifacts)
        again = f" (again: trial {got.retry_of}'s worker was lost)" if got.retry_of is not None else ""
        label, stop_at, annotate = f"trial {got.slot + 1}/{cell.budget}", None, None
        if stage is not None:
            label = f"rung {stage[0] + 1} (to step {stage[1]}) configuration {number}, {got.slot + 1}/{stage[2]}"
            stop_at = stage[1] if stage[1] < suite.training.max_steps else None
            # the record this run supersedes: its runs are carried as compute spent
            annotate = partial(halving.note, previous=self.search_record(cell, number), rung=stage[0],
                               stop=stage[1], configurations=stage[2], reduction_factor=suite.search.reduction_factor)
        self.view.start_trial(f"[{index + 1}/{len(self.cells)}] {cell.id} {label}{again}", suite.training.max_steps)
        record = self.trial(job, TrialHooks(self.view.on_progress, _pruning_hook(trial, stop_at),
                                            claims.heartbeat(study, trial, suite.runner.heartbeat_s)), study, trial,
                            annotate=annotate)
        if annotate is not None:
            annotate(record)
        self.store.write(record)
        _tell(study, trial, record)
        self.view.end_trial(record)

    def confirm_trial(self, cell: Cell, study, got, best) -> None:
        from harness.runner.trial import TrialHooks

        seed = self.seeds[got.slot]
        self.view.start_trial(f"{cell.id} confirm trial {best.trial_number} seed {seed} "
                              f"({got.slot + 1}/{len(self.seeds)})", self.suite.training.max_steps)
        job = self.job(cell, trial_number=best.trial_number, seed=seed, params=best.params, phase="confirm")
        record = self.trial(job, TrialHooks(self.view.on_progress, lambda value, step: False,
                                            claims.heartbeat(study, got.trial, self.suite.runner.heartbeat_s)), study, got.trial)
        self.store.write(record)
        study.tell(got.trial, 0.0 if record.status == "complete" else None,
                   state=None if record.status == "complete" else _failed())
        self.view.end_trial(record)

    def trial(self, job, hooks, study=None, trial=None, annotate=None) -> TrialRecord:
        """Run one job in its own process (or inline), backing off the micro-batch on an
        out-of-memory where the suite asks; a cell whose data or model cannot be prepared gets a
        failed record per trial, and the sweep goes on. Ctrl-C: the running trial is recorded as
        interrupted (`annotate(record)` first, as the caller does to what this returns) and enqueued
        again, so the next run continues it."""
        from harness.runner.isolation import failure_record, run_inline, run_isolated
        from harness.runner.trial import now

        started = now()
        try:
            prepared = self.preparer.get(job.cell.model, job.cell.task)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001
            return self.stamp(failure_record(job, f"preparing {job.cell.model.label} / {job.cell.task.name} failed: "
                                                  f"{type(exc).__name__}: {exc}"[:4000], started, status="failed"))
        job, predicted = self.predict(job, prepared)
        hooks.tick()  # a first prediction of a large model takes seconds; the claim stays alive
        if predicted is not None and predicted.fits is False:
            record = failure_record(job, skipped_reason(predicted), started, status="skipped")
            record.estimate = predicted.to_json()
            return self.stamp(record)
        attempts = []
        try:
            while True:
                if self.suite.runner.isolation == "process":
                    record = run_isolated(job, prepared, hooks, self.suite.runner.trial_timeout_s)
                else:
                    record = run_inline(job, prepared, hooks)
                micro = job.training.micro_batch
                if not (record.status == "oom" and record.failed_phase in ("load", "train")
                        and self.suite.runner.oom_backoff and micro > 1):
                    break
                attempts.append({"micro_batch_size": micro, "status": record.status, "reason": record.reason})
                job = job.with_micro_batch(micro // 2)
                self.view.status(f"{job.cell.id} trial {job.trial_number}: out of memory at micro-batch {micro}, "
                                 f"again at {micro // 2}")
        except KeyboardInterrupt:
            record = failure_record(job, "interrupted (Ctrl-C); enqueued again, so running the same command "
                                         "continues it", started, status="interrupted")
            if annotate is not None:
                annotate(record)
            self.store.write(self.stamp(record))
            if study is not None and trial is not None:
                _interrupt(study, trial)
            raise
        record.attempts = attempts
        record.estimate = predicted.to_json() if predicted is not None else self.estimate_error.get(job.cell.id)
        if "mlflow" in job.report_to:  # written here, from the record: a trial process never opens the store
            from harness.runner.tracking import log_to_mlflow

            record.timing.tracking_s += log_to_mlflow(record, job.tracking_root)
        return self.stamp(record)

    def predict(self, job, prepared):
        """(the job, its prediction): memory and speed predicted before the trial runs, with
        micro_batch_size: auto resolved to the largest micro-batch predicted to fit (a divisor of the
        effective batch, which accumulation keeps). No prediction (None) where the estimate cannot
        simulate this model: the trial runs as it would have, and its record says why. Baseline
        rows train nothing and get none."""
        if not job.cell.method.trains:
            return (job.with_micro_batch(job.training.batch_size) if job.training.micro_batch_size == "auto"
                    else job), None
        if job.training.micro_batch_size != "auto":
            return job, self.estimate(job, prepared, job.training.micro_batch)
        first = self.estimate(job, prepared, None)  # at micro-batch 1, with the largest that fits
        if first is None:
            return job.with_micro_batch(job.training.batch_size), None
        batch = job.training.batch_size
        micro = max((m for m in range(1, batch + 1) if batch % m == 0 and m <= (first.max_micro_batch or 0)),
                    default=1)
        chosen = self.estimate(job, prepared, micro) if micro != first.micro_batch else first
        if chosen is not None:
            chosen.max_micro_batch = first.max_micro_batch
        return job.with_micro_batch(micro), chosen or first

    def estimate(self, job, prepared, micro: int | None):
        """The cell's prediction at this micro-batch (None: at 1, with the largest that fits), made once
        per memory-relevant parameters; None where it cannot be made (the reason is kept per cell)."""
        from harness.estimate import estimate

        key = (job.cell.id, job.cell.model.max_length, micro, json.dumps({k: v for k, v in job.params.items()
                                               if k not in NOT_MEMORY and k != "micro_batch_size"},
                                              sort_keys=True, default=str))
        if key not in self.estimates:
            try:
                if self.target is None:
                    raise RuntimeError(f"the device's memory and peak could not be read: {self.target_error}")
                length_key = (job.cell.id, job.cell.model.max_length)  # sha may shorten it at a rung
                if length_key not in self.longest:  # a walk over the training split: once per cell and length
                    self.longest[length_key] = longest_sequence(prepared, job)
                self.estimates[key] = estimate(
                    job.cell.id, job.cell.method, job.params, job.training, config=prepared.model.config,
                    head=prepared.head, num_labels=len(prepared.labels), seq_len=self.longest[length_key],
                    dtype=job.cell.model.dtype, target=self.target, micro_batch=micro, find_max=micro is None,
                    gradient_checkpointing=job.acceleration.gradient_checkpointing)
            except Exception as exc:  # noqa: BLE001 - an estimate never stops a trial
                self.estimates[key] = None
                self.estimate_error[job.cell.id] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        return self.estimates[key]

    def make_target(self):
        from harness.estimate import target_for

        return target_for(self.device, None, None, self.suite.runner.memory_limit)

    def stamp(self, record: TrialRecord) -> TrialRecord:
        record.worker = self.name
        return record

    def record_lost(self, study, trial) -> bool:
        """A trial whose worker stopped beating (killed, machine lost): its record, before Optuna
        enqueues it once more (once only: a lost retry is not retried again). A worker killed after
        writing the trial's record and before telling Optuna lost nothing: the record stays, no retry."""
        from harness.runner.isolation import failure_record
        from harness.runner.trial import now

        cell = self.by_study.get(study.study_name)
        if cell is None:
            return True
        if self.already_recorded(study.study_name, cell, trial):
            return False
        retried = len(trial.system_attrs.get("retry_history", [])) < 1
        reason = (f"its worker was lost (no heartbeat for {self.suite.runner.lost_after_s:g} s): "
                  + ("run again as a new trial" if retried else "not run again (it was itself a retry)"))
        stage = None
        if halving.applies(self.suite, cell) and "::confirm-t" not in study.study_name:
            rung = halving.rung_of(study.study_name)
            configurations = cell.budget if not rung else sum(
                1 for t in study.get_trials(deepcopy=False) if claims.fresh(t))
            stage = (rung, halving.stop_step(self.suite, rung, configurations), configurations)
        if "::confirm-t" in study.study_name:
            best = int(study.study_name.rsplit("-t", 1)[1])
            params = next((r.params for r in self.store.load_cell(cell.id)
                           if r.phase == "search" and r.trial_number == best), {})
            job = self.job(cell, trial_number=best, seed=self.seeds[int(trial.user_attrs.get(claims.SLOT, 0))],
                           params=params, phase="confirm")
        else:
            job = self.job(halving.at_rung(self.suite, cell, stage[1]) if stage else cell,
                           trial_number=halving.config_number(trial), seed=search_seed(self.suite),
                           sampled=dict(trial.params))
        started = trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else now()
        record = self.stamp(failure_record(job, reason, started, status="crashed"))
        if stage is not None:
            halving.note(record, self.search_record(cell, job.trial_number), *stage, self.suite.search.reduction_factor)
        self.store.write(record)
        return True

    def search_record(self, cell: Cell, number: int) -> TrialRecord | None:
        """The search record of this trial number (under sha: its configuration's latest run), if any."""
        return next((r for r in self.store.load_cell(cell.id) if r.phase == "search" and r.trial_number == number),
                    None)

    def already_recorded(self, study_name: str, cell: Cell, trial) -> bool:
        records = [r for r in self.store.load_cell(cell.id) if r.status != "crashed"]  # crashed: a loss on record
        if "::confirm-t" in study_name:
            best = int(study_name.rsplit("-t", 1)[1])
            seed = self.seeds[int(trial.user_attrs.get(claims.SLOT, 0))]
            return any(r.phase == "confirm" and r.trial_number == best and r.seed == seed for r in records)
        if halving.applies(self.suite, cell):  # sha: this rung's run of it
            rung = halving.rung_of(study_name)
            return any(r.phase == "search" and r.trial_number == halving.config_number(trial)
                       and (r.halving or {}).get("rung") == rung for r in records)
        return any(r.phase == "search" and r.trial_number == trial.number for r in records)


def longest_sequence(prepared, job) -> int:
    """The sequence length a prediction assumes in a sweep: the longest training example as tokenized
    (a batch is padded to its longest, and some batch holds the longest one), at most max_length.
    `harness estimate`, which reads no data, assumes max_length."""
    try:
        longest = max(len(ids) for ids in prepared.data["train"]["input_ids"])
    except (KeyError, TypeError, ValueError):
        return job.cell.model.max_length
    return max(min(longest, job.cell.model.max_length), 1)


# training values that change no byte of memory: a cell's prediction is made once for all of them
NOT_MEMORY = ("learning_rate", "weight_decay", "warmup_ratio")


def skipped_reason(predicted) -> str:
    need = predicted.predicted_peak_bytes + predicted.parts.get("cuda_context", 0)
    return (f"predicted not to fit: {_size(need)} needed at micro-batch {predicted.micro_batch} x "
            f"{predicted.seq_len} tokens, {_size(predicted.memory_limit_bytes)} available "
            f"(harness estimate; set runner.memory_limit, or training.micro_batch_size: auto)")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _failed():
    import optuna

    return optuna.trial.TrialState.FAIL


def _interrupt(study, trial) -> None:
    """Fail an interrupted trial and enqueue it again as its retry (as Optuna does for a lost one)."""
    import optuna

    frozen = study._storage.get_trial(trial._trial_id)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    history = [*frozen.system_attrs.get("retry_history", []), frozen.number]
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
        user_attrs=frozen.user_attrs, system_attrs={"failed_trial": history[0], "retry_history": history}))


def _enqueue_defaults(study, cell: Cell, dists: dict) -> None:
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
    if defaults:
        study.enqueue_trial(defaults, skip_if_exists=True)


def _sampler(suite, cell_index: int):
    import optuna

    seed = suite.search.seed + cell_index  # seeded from the suite; distinct per cell
    if suite.search.sampler in ("random", "none"):
        return optuna.samplers.RandomSampler(seed=seed)
    # Few trials per cell: let TPE start after a small random warm-up.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(3, suite.search.trials_per_cell))


def _pruner(suite):
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
    return optuna.pruners.NopPruner()  # none; sha, whose runs stop at their rung (_pruning_hook's stop_at)


def _pruning_hook(trial, stop_at: int | None = None):
    """Report each rung's validation score to Optuna; stop where its pruner says, or (sha: a run below
    the bracket's last rung, runner/halving.py) at the run's own rung."""
    def should_prune(value: float, step: int) -> bool:
        trial.report(value, step)
        return step >= stop_at if stop_at is not None else trial.should_prune()

    return should_prune


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


def _tell(study, trial, record: TrialRecord) -> None:
    import optuna

    # the trial's last heartbeat may be seconds old (its record was being written): one more, so that
    # no other worker takes it for lost while its figures are stored
    study._storage.record_heartbeat(trial._trial_id)
    try:
        for key, value in key_figures(record).items():
            trial.set_user_attr(key, value)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # another worker already closed it as lost; its record (written above) stands

    if record.status == "complete" and record.selection_score is not None:
        study.tell(trial, record.selection_score)  # the validation score: the test split informs no choice
    elif record.status == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
