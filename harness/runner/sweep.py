"""Sweep a suite: one Optuna study per cell, the same trial budget for every method, one record per
trial, then confirmation runs of each cell's best configuration. Running the same suite again
resumes: finished trials are kept. The runner reports progress through runner/progress.py and
never publishes: `harness run` hands the records to report/publish.py."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.measure.provenance import text_hash
from harness.records.schema import TrialRecord
from harness.records.select import best_search_trial
from harness.records.store import RecordStore
from harness.runner.plan import Cell, confirm_seeds, distributions, plan, search_seed, smoke_suite
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


def planned_trials(loaded: LoadedSuite) -> int:
    seeds = len(confirm_seeds(loaded.suite))
    return sum(c.budget + (seeds if c.confirms else 0) for c in plan(loaded.suite))


def run_sweep(loaded: LoadedSuite, root: Path, view: Progress) -> SweepOutcome:
    """Run every cell of the suite into root/<suite name>.

    With process isolation the sweep runs in a freshly spawned sweep process: trials are forked
    from it, and fork is only safe from a process that never ran OpenMP-parallel torch code
    (a forked child of one that did can hang in its first parallel op). This process may have
    (a notebook, a test run); the spawned one never computes."""
    from harness.runner.server import run_in_sweep_process

    t0 = time.perf_counter()
    if loaded.suite.runner.isolation == "process":
        run_in_sweep_process(sweep, (loaded, root), view)
    else:
        sweep(loaded, root, view)
    return SweepOutcome(loaded, RecordStore(root / loaded.suite.name), plan(loaded.suite),
                        time.perf_counter() - t0)


def cells_verdict(outcome: SweepOutcome, records: list[TrialRecord], smoke: bool = False) -> int:
    """Exit 1 where a cell ended with no complete trial (its records say why), 0 otherwise."""
    complete = {r.cell_id for r in records if r.status == "complete" and r.phase == "search"}
    missing = [c.id for c in outcome.cells if c.id not in complete]
    for cell_id in missing:
        reasons = sorted({f"{r.status}: {(r.reason or '').splitlines()[0][:160]}" for r in records
                          if r.cell_id == cell_id and r.status != "complete"}) or ["no trial ran"]
        print(f"cell {cell_id} has no complete trial ({'; '.join(reasons)})", file=sys.stderr)
    if missing:
        print(f"{len(missing)} of {len(outcome.cells)} cells have no complete trial: exit 1", file=sys.stderr)
        return 1
    if smoke:
        print(f"smoke: all {len(outcome.cells)} cells trained, validated and were scored on test (2 steps on 16 "
              f"examples: the numbers above only show that each cell runs)")
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


def check_resumable(store: RecordStore, text: str) -> None:
    """Refuse to mix trials of two different suites in one results folder (a changed model, task,
    method, search space or training setting makes the old trials incomparable with new ones)."""
    previous = store.root / "suite.yaml"
    if previous.exists() and list((store.root / "records").glob("*/*.json")):
        if _comparable(previous.read_text(encoding="utf-8")) != _comparable(text):
            raise UserError(f"{store.root} holds trials of a different version of this suite (saved as "
                            f"{previous}); only the budget, seeds and output settings may change on a resume. "
                            f"Run into another folder (--results DIR) or remove that one.")


def sweep(loaded: LoadedSuite, root: Path, view: Progress) -> None:
    """The sweep loop, in the sweep process: one Optuna study per cell, trials forked from here."""
    from harness.models import configure_hub_access

    suite = loaded.suite
    configure_hub_access(list(suite.models), [t.data.hub.name for t in suite.tasks if t.data.hub is not None])
    from harness.runner.stack import preload, quiet_libraries

    quiet_libraries()
    store = RecordStore(root / suite.name)
    check_resumable(store, loaded.text)
    store.load_all()  # a results folder with a record that cannot be read stops here, before any trial
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / "suite.yaml").write_text(loaded.text, encoding="utf-8")
    preload()
    _Sweep(loaded, store, view).run()


class _Sweep:
    """The state one sweep shares across its cells: store, prepared data and models, device."""

    def __init__(self, loaded: LoadedSuite, store: RecordStore, view: Progress):
        from harness.runner.prepare import Preparer, pick_device

        suite = loaded.suite
        self.loaded, self.suite, self.store, self.view = loaded, suite, store, view
        self.suite_hash = text_hash(loaded.text)
        self.device = pick_device(suite.training.device)
        self.preparer = Preparer(loaded.base_dir, seed=suite.search.seed, max_examples=suite.runner.max_examples)
        self.cells = plan(suite)

    def run(self) -> None:
        for index, cell in enumerate(self.cells):
            self.search(index, cell)
            self.confirm(cell)

    def job(self, cell: Cell, **kwargs):
        from harness.runner.jobs import make_job

        return make_job(self.loaded, cell, device=self.device, suite_hash=self.suite_hash, **kwargs)

    def trial(self, job, hooks) -> TrialRecord:
        """Run one job in its own process (or inline); a cell whose data or model cannot be prepared
        gets a failed record per trial, and the sweep goes on."""
        from harness.runner.isolation import failure_record, run_inline, run_isolated
        from harness.runner.trial import now

        started = now()
        try:
            prepared = self.preparer.get(job.cell.model, job.cell.task)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001
            return failure_record(job, f"preparing {job.cell.model.label} / {job.cell.task.name} failed: "
                                       f"{type(exc).__name__}: {exc}"[:4000], started, status="failed")
        if self.suite.runner.isolation == "process":
            return run_isolated(job, prepared, hooks, self.suite.runner.trial_timeout_s)
        return run_inline(job, prepared, hooks)

    def search(self, index: int, cell: Cell) -> None:
        import optuna

        from harness.runner.trial import TrialHooks

        suite, store, view = self.suite, self.store, self.view
        study = optuna.create_study(study_name=cell.id, storage=store.study_storage_url, direction=cell.direction,
                                    load_if_exists=True, sampler=_sampler(suite, index), pruner=_pruner(suite))
        done = {r.trial_number for r in store.load_cell(cell.id) if r.phase == "search"}
        _close_interrupted(study, done)
        remaining = cell.budget - len(done)
        view.skip(min(len(done), cell.budget))
        if remaining > 0:
            view.status(f"preparing {cell.model.label} / {cell.task.name}")
        dists = distributions(cell.space)
        if not study.trials:
            _enqueue_defaults(study, cell, dists)
        for k in range(remaining):
            trial = study.ask(dists)
            artifacts = (str(store.root / "adapters" / cell.id / f"trial-{trial.number:04d}")
                         if suite.output.keep_adapters else None)
            job = self.job(cell, trial_number=trial.number, seed=search_seed(suite), sampled=dict(trial.params),
                           artifact_dir=artifacts)
            view.start_trial(f"[{index + 1}/{len(self.cells)}] {cell.id} trial {len(done) + k + 1}/{cell.budget}",
                             suite.training.max_steps)
            record = self.trial(job, TrialHooks(view.on_progress, _pruning_hook(trial)))
            store.write(record)
            _tell(study, trial, record)
            view.end_trial(record)

    def confirm(self, cell: Cell) -> None:
        """Re-run the cell's validation-best search configuration once per fresh confirmation seed
        (resumable). Confirmations are keyed by (trial, seed): when a resumed search finds a new
        best, the new best is confirmed afresh and the old runs stay on record, out of the board."""
        from harness.runner.trial import TrialHooks

        seeds = confirm_seeds(self.suite)
        if not seeds or not cell.confirms:
            return
        records = self.store.load_cell(cell.id)
        best = best_search_trial(records, cell.direction)
        if best is None:
            self.view.skip(len(seeds))  # nothing completed, nothing to confirm; the failures are on record
            return
        confirmed = {r.seed for r in records if r.phase == "confirm" and r.trial_number == best.trial_number}
        for i, seed in enumerate(seeds):
            if seed in confirmed:
                self.view.skip(1)
                continue
            self.view.start_trial(f"{cell.id} confirm trial {best.trial_number} seed {seed} ({i + 1}/{len(seeds)})",
                                  self.suite.training.max_steps)
            job = self.job(cell, trial_number=best.trial_number, seed=seed, params=best.params, phase="confirm")
            record = self.trial(job, TrialHooks(self.view.on_progress, lambda value, step: False))
            self.store.write(record)
            self.view.end_trial(record)


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
    import optuna

    if suite.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def _close_interrupted(study, done: set[int]) -> None:
    """Trials left RUNNING by a sweep that was stopped: mark them failed so TPE ignores them."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number not in done:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _pruning_hook(trial):
    def should_prune(value: float, step: int) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    return should_prune


def _tell(study, trial, record: TrialRecord) -> None:
    import optuna

    if record.status == "complete" and record.selection_score is not None:
        study.tell(trial, record.selection_score)  # the validation score: the test split informs no choice
    elif record.status == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
