"""Sweep a suite: one Optuna study per cell, the same trial budget for every method, one record per
trial, then confirmation runs of each cell's best configuration. This file is the entry: the run's
checks before any trial (preflight, resume), its results set, and its worker processes; each worker's
claim loop is runner/loop.py. Running the same suite again resumes: finished trials are kept. The
runner reports progress through runner/progress.py and never publishes: `harness run` hands the
records to report/publish.py, and report/outcome.py says how the run ended."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.plan import Cell, confirm_seeds, plan, smoke_suite
from harness.records.store import SUITE_FILE, RecordStore, open_store, setting_differences
from harness.runner import halving
from harness.runner.leases import DEVICES_ENV
from harness.runner.progress import Progress
from harness.spec import LoadedSuite


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


def run_sweep(loaded: LoadedSuite, root: Path, view: Progress, workers: int | None = None,
              gpus: list[str] | None = None,
              storage_url: str | None = None, verbose: bool = False) -> SweepOutcome:
    """Run every cell of the suite into root/<suite name> (or the PostgreSQL storage), with one
    worker, `workers` workers, or one worker per device in `gpus`, leasing them to trials (runner/leases.py).

    With process isolation each worker runs in a freshly spawned sweep process: trials are forked
    from it, and fork is only safe from a process that never ran OpenMP-parallel torch code
    (a forked child of one that did can hang in its first parallel op). This process may have
    (a notebook, a test run); the spawned one never computes."""
    from harness.runner.server import run_in_sweep_processes

    preflight(loaded, root, storage_url)
    t0 = time.perf_counter()
    from harness.runner.logs import LOG_ENV, VERBOSE_ENV

    chatter = {VERBOSE_ENV: "1"} if verbose else {LOG_ENV: str(log_file(loaded, root).resolve())}
    # --gpus: one worker per device, each leasing from the whole pool as many devices as a trial has ranks
    # (runner/leases.py); the pool is what CUDA sees in the sweep process, a trial narrows it to its lease
    pool = {DEVICES_ENV: ",".join(gpus), "CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else {}
    count = workers if workers is not None else len(gpus) if gpus else 1  # --gpus alone: a worker per device
    envs = [{**pool, **chatter} for _ in range(max(count, 1))]
    if loaded.suite.runner.isolation == "process":
        run_in_sweep_processes(sweep, [((loaded, root), {"storage_url": storage_url, "worker": _name(i, env)}, env)
                                       for i, env in enumerate(envs)], view)
    else:
        sweep(loaded, root, view, storage_url=storage_url)
    return SweepOutcome(loaded, results_store(loaded.suite.name, root, storage_url), plan(loaded.suite),
                        time.perf_counter() - t0)


def _name(i: int, env: dict) -> str:
    """What a worker is called beside its host and process id (Worker adds those)."""
    return f"worker{i}"


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


def check_resumable(store: RecordStore, text: str) -> None:
    """Refuse to mix trials of two different suites in one results set (a changed model, task,
    method, search space or training setting makes the old trials incomparable with new ones)."""
    import yaml

    previous = store.saved_suite()
    if previous is None or not store.has_records():
        return
    changed = setting_differences(yaml.safe_load(previous) or {}, yaml.safe_load(text) or {})
    if changed:
        raise UserError(f"{store.where} holds trials of a different version of this suite (its {SUITE_FILE} differs "
                        f"in {', '.join(key for key, _, _ in changed[:5])}); only the budget, seeds and output "
                        f"settings may change on a resume. Run into another folder (--results DIR) or remove that one.")


def sweep(loaded: LoadedSuite, root: Path, view: Progress, storage_url: str | None = None,
          worker: str | None = None) -> None:
    """One worker, in its sweep process: claims trials of every cell until each cell's budget and
    confirmations are done, forking each trial from here. Any number of these share a suite."""
    from harness.models import configure_hub_access

    suite = loaded.suite
    configure_hub_access(list(suite.models), [t.data.hub.name for t in suite.tasks if t.data.hub is not None])
    from harness.runner.stack import preload, quiet_libraries

    quiet_libraries()
    store = results_store(suite.name, root, storage_url)
    check_resumable(store, loaded.text)
    store.load_all()  # a results set with a record that cannot be read stops here, before any trial
    store.save_suite(loaded.text)
    preload(suite.tracking.report_to)
    from harness.runner.loop import Worker

    Worker(loaded, store, view, worker).run()


def results_store(suite_name: str, root: Path, storage_url: str | None) -> RecordStore:
    """The results set: files under root/<suite> (Optuna in a SQLite file beside them), or a table
    of the PostgreSQL database that also holds the studies (adapters still under root/<suite>)."""
    return open_store(storage_url or root / suite_name, suite_name, root / suite_name)
