"""The one publishing step: records -> the leaderboard (computed once) -> the terminal table, the
HTML report and the CSV/JSON/Markdown exports. `harness run` and `harness report` both end here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.records.schema import TrialRecord
from harness.report.files import write_leaderboard_files
from harness.report.compute import compute_table
from harness.report.decide import Terms, terms_of
from harness.report.html import write_report
from harness.report.leaderboard import leaderboard
from harness.report.terminal import print_board


@dataclass(frozen=True)
class Publication:
    board: pd.DataFrame
    page: Path


def publish(records: list[TrialRecord], out_dir: Path, storage_url: str | None, suite_text: str,
            elapsed_s: float | None = None, console=None, study_prefix: str = "", wide: bool = False,
            log_file: str | None = None, base_dir: Path | None = None) -> Publication:
    terms = answer_terms(suite_text, records, out_dir, base_dir or Path.cwd())
    board, compute = leaderboard(records, terms.spec.tolerance), compute_table(records)
    print_board(board, records, elapsed_s, console, compute, wide=wide, log_file=log_file, terms=terms)
    page = write_report(records, board, out_dir, storage_url, suite_text, study_prefix, compute, terms)
    write_leaderboard_files(board, out_dir)
    return Publication(board, page)


def answer_terms(suite_text: str, records: list[TrialRecord], out_dir: Path | None, base_dir: Path,
                 **overrides) -> Terms:
    """The suite's decision terms, with the predictions at its decision.target (report/target.py; cached
    in out_dir) where it names one. A target whose config cannot be read is said on stderr, and the
    answer goes on without it."""
    import dataclasses
    import sys

    from harness.report.target import at_target

    terms = terms_of(suite_text, **overrides)
    decided = terms.spec
    if decided.target is None:
        return terms
    try:
        return dataclasses.replace(terms, target=tuple(at_target(suite_text, base_dir, decided, records, out_dir)))
    except Exception as exc:  # noqa: BLE001 - a missing config or hub id: the answer still stands
        print(f"decision.target {decided.target.model}: no prediction there ({type(exc).__name__}: {exc})"[:400],
              file=sys.stderr)
        return terms
