"""The Python API (notebooks, scripts): the CLI is a thin layer over it.

    import harness
    results = harness.run("suites/quickstart.yaml")      # or a suite as a dict
    results.leaderboard()                                # a pandas DataFrame, as leaderboard.json
    old = harness.load("results/nightly-2026-12-01")
    results.compare(old)                                 # one row per cell and metric: the verdicts

Nothing here is imported by `harness validate` or `harness ls`: `import harness` stays light and
this module loads on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Results:
    """A results set: records on disk (results/<suite>) or in PostgreSQL (storage)."""

    root: Path  # results/<suite> (with storage: where adapters and tracking files go)
    storage: str | None = None  # postgresql://...: the records are in its table for `suite`
    suite: str | None = None
    page: Path | None = None  # the HTML report, where one was written
    exit_code: int = 0  # what `harness run` would exit with (1: a cell with no complete trial)
    _records: list | None = field(default=None, repr=False)

    def _store(self):
        from harness.records.store import open_store

        return open_store(self.storage or self.root, self.suite or self.root.name)

    def _where(self) -> str:
        return f"{self.storage}#{self.suite}" if self.storage else str(self.root)

    def records(self) -> list:
        """Every TrialRecord of the set (typed; `.model_dump()` gives plain dicts)."""
        if self._records is None:
            self._records = self._store().load_all()
        return list(self._records)

    def decision(self, tolerance: float | None = None, prefer: list[str] | None = None,
                 limits: dict | None = None, target: dict | None = None) -> list[dict]:
        """Per task x model: the answer (which method to use), each method's verdict against the best
        and the limits it breaks, as `harness recommend --json` prints them; the suite's decision
        settings (tolerance, prefer, limits, target) unless given."""
        from harness.report.decide import decision
        from harness.report.publish import answer_terms

        store, records = self._store(), self.records()
        where = store.reports_dir() / (self.suite or (records[0].suite if records else "results"))
        terms = answer_terms(store.saved_suite() or "", records, where, Path.cwd(),
                             tolerance=tolerance, prefer=prefer, limits=limits, target=target)
        return decision(records, terms)

    def leaderboard(self) -> pd.DataFrame:
        """One row per task x model x method: what the CLI prints and exports as leaderboard.json."""
        from harness.report.leaderboard import leaderboard

        return leaderboard(self.records())

    def compare(self, baseline: "Results | str | Path", **tolerances: float) -> pd.DataFrame:
        """Verdicts of this set against a baseline (another Results or its folder), per cell and metric:
        improved, unchanged, regressed, missing, skipped, ... with the noise threshold used."""
        from harness.report.compare import comparison

        base = baseline._where() if isinstance(baseline, Results) else baseline
        result, _, _ = comparison(str(base), self._where(), tolerances)
        return pd.DataFrame([{"cell": v.cell, "metric": v.metric, "verdict": v.verdict, "baseline": v.baseline,
                              "candidate": v.candidate, "change": v.change, "threshold": v.threshold,
                              "noise_from": v.noise_from, "reason": v.reason, "failure": v.is_failure}
                             for v in result.verdicts])


def load(results_dir: str | Path, *, storage: str | None = None) -> Results:
    """An existing results set: results/<suite> (files), or the suite's name in PostgreSQL (storage)."""
    from harness.errors import UserError

    root = Path(results_dir)
    if storage is None and not root.is_dir():
        raise UserError(f"{root}: results folder not found")
    return Results(root=root, storage=storage, suite=str(results_dir) if storage else None)


def _suite_file(suite: str | Path | dict[str, Any]) -> Path:
    """A suite given as a mapping is written once as YAML under .harness/suites/ in the current
    folder (relative data paths then resolve against it, as they would for a file written there)."""
    if not isinstance(suite, dict):
        return Path(suite)
    import hashlib

    import yaml

    text = yaml.safe_dump(suite, sort_keys=False)
    folder = Path.cwd() / ".harness" / "suites"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{suite.get('name', 'suite')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(suite: str | Path | dict[str, Any], *, results: str | None = None, reports: str | None = None,
        quiet: bool = True, workers: int | None = None, gpus: list[str] | None = None, storage: str | None = None,
        smoke: bool = False, gpu_memory: str | None = None, console=None, verbose: bool = False,
        wide: bool = False) -> Results:
    """Sweep a suite (a YAML path or a mapping), publish its leaderboard and report, and return its
    results. Bad input raises harness.errors.UserError with every problem (file, line, field).
    Library warnings go to results/<suite>/run.log (verbose: to stderr); wide: the full leaderboard
    on the terminal instead of the compact one."""
    from harness.config import load_suite
    from harness.report.publish import publish
    from harness.report.terminal import ProgressView
    from harness.runner.logs import captured
    from harness.report.outcome import cells_verdict
    from harness.runner.sweep import log_file, planned_trials, prepare_run, run_sweep

    loaded, root = prepare_run(load_suite(_suite_file(suite)), results, smoke)
    if gpu_memory:
        loaded = with_memory_limit(loaded, gpu_memory)
    done = _done_before(loaded, root, storage)
    with ProgressView(total=planned_trials(loaded, done), quiet=quiet) as view:
        outcome = run_sweep(loaded, root, view, workers=workers, gpus=gpus, storage_url=storage, verbose=verbose)
    records = outcome.store.load_all()
    reports_root = Path(reports) if reports else Path(loaded.suite.output.reports_dir)
    with captured(log_file(loaded, root), verbose):
        shown = publish(records, reports_root / loaded.suite.name, outcome.store.study_storage_url, loaded.text,
                        elapsed_s=outcome.elapsed_s, study_prefix=outcome.store.study_name(""), console=console,
                        wide=wide, log_file=None if verbose else str(log_file(loaded, root)),
                        base_dir=loaded.path.parent)
    code = cells_verdict([c.id for c in outcome.cells], records, smoke=smoke)
    return Results(root=Path(outcome.store.root), storage=storage, suite=loaded.suite.name, page=shown.page,
                   exit_code=code, _records=records)


def with_memory_limit(loaded, text: str):
    """The memory every trial must fit in (runner.memory_limit), for this run (--gpu-memory)."""
    import dataclasses

    memory_option(text, "harness run")
    suite = loaded.suite.model_copy(update={"runner": loaded.suite.runner.model_copy(update={"memory_limit": text})})
    return dataclasses.replace(loaded, suite=suite)


def memory_option(text: str, command: str) -> int:
    """--gpu-memory's bytes; a clean error naming the command and the option where it is no size."""
    from harness.errors import Problem, UserError
    from harness.spec import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise UserError([Problem(command, None, "--gpu-memory", str(exc))])


def _done_before(loaded, root: Path, storage: str | None) -> int:
    """Finished trials already in the results set (a resumed run shows only what is left)."""
    from harness.errors import UserError
    from harness.runner.sweep import results_store

    try:
        return results_store(loaded.suite.name, root, storage).count()
    except UserError:  # a storage that cannot be reached: the run's preflight says so, with the rest
        return 0
