"""Sweep a suite: one Optuna study per cell, the same trial budget for every method, one record
per trial, then the leaderboard. Running the same suite again resumes: finished trials are kept."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from harness.spec import LoadedSuite
from harness.errors import UserError
from harness.measure.provenance import environment, text_hash
from harness.records.schema import TrialRecord
from harness.records.store import RecordStore
from harness.runner.plan import Cell, confirm_seeds, distributions, plan, smoke_suite


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # fork-safe tokenizers
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # is_available() without a CUDA context
    import warnings

    import optuna
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


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


def _record_base(loaded: LoadedSuite, cell: Cell, suite_hash: str) -> dict:
    s = loaded.suite
    return {
        "suite": s.name, "suite_hash": suite_hash, "cell_id": cell.id, "model": cell.model.label,
        "task": cell.task_label, "task_kind": cell.task.kind, "method": cell.entry.display,
        "method_name": cell.method.name, "method_family": cell.method.family,
        "objective_metric": cell.metric, "objective_direction": cell.direction,
        "environment": environment(),
        "config": {"model": cell.model.model_dump(), "task": cell.task.model_dump(),
                   "training": s.training.model_dump(), "search_space": {k: v.model_dump() for k, v in cell.space.items()},
                   "suite_file": str(loaded.path)},
    }


# Keys that may change between runs into the same results folder without making its trials
# incomparable: the budget (raising it resumes the search), seeds added, where output goes.
RESUMABLE_KEYS = {("search", "trials_per_cell"), ("search", "timeout_s"), ("confirm", "seeds"),
                  ("output",), ("runner",), ("description",)}


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


def _finished_numbers(store: RecordStore, cell: Cell) -> set[int]:
    return {r.trial_number for r in store.load_cell(cell.id) if r.phase == "search"}


def _close_interrupted(study, done: set[int]) -> None:
    """Trials left RUNNING by a sweep that was stopped: mark them failed so TPE ignores them."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number not in done:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def sweep(loaded: LoadedSuite, root: Path, view) -> None:
    """The sweep loop: one Optuna study per cell, trials forked from this process. `view` receives
    progress (a ProgressView, or an EventSender when this runs in the sweep process)."""
    from harness.models import configure_hub_access

    suite = loaded.suite
    hub_data = [t.data.hub.name for t in suite.tasks if t.data.hub is not None]
    configure_hub_access(list(suite.models), hub_data)
    _quiet_libraries()

    import optuna

    from harness.runner.isolation import failure_record, run_inline, run_isolated
    from harness.runner.prepare import Preparer, pick_device
    from harness.runner.trial import TrialHooks, TrialJob, now, preload

    store = RecordStore(root / suite.name)
    check_resumable(store, loaded.text)
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / "suite.yaml").write_text(loaded.text, encoding="utf-8")
    suite_hash = text_hash(loaded.text)
    device = pick_device(suite.training.device)
    preload()
    cells = plan(suite)
    preparer = Preparer(loaded.base_dir, seed=suite.search.seed, max_examples=suite.runner.max_examples)
    seed = suite.seeds[0]

    def run(job, prepared, hooks):
        started = now()
        try:
            ready = prepared()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the data or model could not be prepared: a failed record
            return failure_record(job, f"preparing {job.cell.model.label} / {job.cell.task.name} failed: "
                                       f"{type(exc).__name__}: {exc}"[:4000], started, status="failed")
        if suite.runner.isolation == "process":
            return run_isolated(job, ready, hooks, suite.runner.trial_timeout_s)
        return run_inline(job, ready, hooks)

    for index, cell in enumerate(cells):
        study = optuna.create_study(study_name=cell.id, storage=store.study_storage_url,
                                    direction=cell.direction, load_if_exists=True,
                                    sampler=_sampler(suite, index), pruner=_pruner(suite))
        done = _finished_numbers(store, cell)
        _close_interrupted(study, done)
        remaining = cell.budget - len(done)
        view.skip(min(len(done), cell.budget))
        if remaining > 0:
            view.status(f"preparing {cell.model.label} / {cell.task.name}")
        prepared = lambda cell=cell: preparer.get(cell.model, cell.task)  # noqa: E731 (cached per model+task)
        dists = distributions(cell.space)
        cell_t0 = time.perf_counter()
        for k in range(remaining):
            if suite.search.timeout_s and time.perf_counter() - cell_t0 > suite.search.timeout_s:
                view.skip(remaining - k)
                break
            trial = study.ask(dists)
            sampled = dict(trial.params)
            job = TrialJob(cell=cell, params={**cell.fixed, **sampled}, sampled=sampled,
                           trial_number=trial.number, seed=seed,
                           record_base=_record_base(loaded, cell, suite_hash), training=suite.training,
                           measure=suite.measure, device=device,
                           copy_model=suite.runner.isolation == "inline",
                           artifact_dir=str(store.root / "adapters" / cell.id / f"trial-{trial.number:04d}")
                           if suite.output.keep_adapters else None)
            hooks = TrialHooks(view.on_progress, _pruning_hook(trial))
            view.start_trial(f"[{index + 1}/{len(cells)}] {cell.id} trial {len(done) + k + 1}/{cell.budget}",
                             suite.training.max_steps)
            record = run(job, prepared, hooks)
            store.write(record)
            _tell(study, trial, record)
            view.end_trial(record)
        _confirm(loaded, cell, store, prepared, view, run, job_for=lambda best, seed: TrialJob(
            cell=cell, params=dict(best.params), sampled={}, trial_number=best.trial_number, seed=seed,
            record_base={**_record_base(loaded, cell, suite_hash), "phase": "confirm"}, training=suite.training,
            measure=suite.measure, device=device, copy_model=suite.runner.isolation == "inline"))


def _confirm(loaded: LoadedSuite, cell: Cell, store: RecordStore, prepared, view, run, job_for) -> None:
    """Re-run the cell's best search configuration once per confirmation seed (resumable)."""
    from harness.runner.trial import TrialHooks

    suite = loaded.suite
    seeds = confirm_seeds(suite)
    if not seeds:
        return
    maximize = cell.direction == "maximize"
    search = [r for r in store.load_cell(cell.id) if r.phase == "search" and r.status == "complete"
              and r.objective is not None]
    if not search:
        view.skip(len(seeds))  # nothing completed, nothing to confirm; the failures are on record
        return
    best = sorted(search, key=lambda r: (r.objective if maximize else -r.objective), reverse=True)[0]
    confirmed = {r.seed for r in store.load_cell(cell.id) if r.phase == "confirm"}
    for i, seed in enumerate(seeds):
        if seed in confirmed:
            view.skip(1)
            continue
        view.start_trial(f"{cell.id} confirm trial {best.trial_number} seed {seed} ({i + 1}/{len(seeds)})",
                         suite.training.max_steps)
        record = run(job_for(best, seed), prepared, TrialHooks(view.on_progress, lambda value, step: False))
        store.write(record)
        view.end_trial(record)


def run_suite(loaded: LoadedSuite, results_root: str | None = None, reports_root: str | None = None,
              quiet: bool = False, smoke: bool = False) -> int:
    """Run a suite, show progress, then print the leaderboard and write the report.

    With process isolation the sweep runs in a freshly spawned sweep process: trials are forked
    from it, and fork is only safe from a process that never ran OpenMP-parallel torch code
    (a forked child of one that did can hang in its first parallel op). This process may have
    (a notebook, a test run); the spawned one never computes."""
    from harness.report.terminal import ProgressView, print_leaderboard
    from harness.runner.server import run_in_sweep_process

    if smoke:
        loaded = LoadedSuite(smoke_suite(loaded.suite), loaded.path, loaded.text)
    suite = loaded.suite
    root = Path(results_root) if results_root else Path(suite.output.results_dir)
    if smoke:
        import shutil

        shutil.rmtree(root / suite.name, ignore_errors=True)  # a smoke run always starts afresh
    view = ProgressView(total=sum(c.budget + len(confirm_seeds(suite)) for c in plan(suite)), quiet=quiet)
    t0 = time.perf_counter()
    with view:
        if suite.runner.isolation == "process":
            run_in_sweep_process(sweep, (loaded, root), view)
        else:
            sweep(loaded, root, view)
    store = RecordStore(root / suite.name)
    records = store.load_all()
    print_leaderboard(records, elapsed_s=time.perf_counter() - t0)
    from harness.report.html import write_report

    reports = Path(reports_root) if reports_root else Path(suite.output.reports_dir)
    page = write_report(records, reports / suite.name, store.study_storage_url, loaded.text)
    print(f"records: {store.root}/records   report: {page}")
    return _cells_verdict(plan(suite), records, smoke)


def _cells_verdict(cells: list[Cell], records: list[TrialRecord], smoke: bool) -> int:
    """Exit 1 where a cell ended with no complete trial (its records say why), 0 otherwise."""
    complete = {r.cell_id for r in records if r.status == "complete" and r.phase == "search"}
    missing = [c.id for c in cells if c.id not in complete]
    for cell_id in missing:
        reasons = sorted({f"{r.status}: {(r.reason or '').splitlines()[0][:160]}" for r in records
                          if r.cell_id == cell_id and r.status != "complete"}) or ["no trial ran"]
        print(f"cell {cell_id} has no complete trial ({'; '.join(reasons)})", file=sys.stderr)
    if missing:
        print(f"{len(missing)} of {len(cells)} cells have no complete trial: exit 1", file=sys.stderr)
        return 1
    if smoke:
        print(f"smoke: all {len(cells)} cells trained, validated and were scored on test (2 steps on 16 examples: "
              f"the numbers above only show that each cell runs)")
    return 0


def _pruning_hook(trial):
    def should_prune(value: float, step: int) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    return should_prune


def _tell(study, trial, record: TrialRecord) -> None:
    import optuna

    if record.status == "complete" and record.objective is not None:
        study.tell(trial, record.objective)
    elif record.status == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
