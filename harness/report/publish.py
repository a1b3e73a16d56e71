"""The one publishing step: records -> the leaderboard (computed once) -> the terminal table, the
HTML report and the CSV/JSON/Markdown exports. `harness run` and `harness report` both end here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.records.schema import TrialRecord
from harness.report.files import write_leaderboard_files
from harness.report.compute import compute_table
from harness.report.decide import decision_of
from harness.report.html import write_report
from harness.report.leaderboard import leaderboard
from harness.report.terminal import print_board


@dataclass(frozen=True)
class Publication:
    board: pd.DataFrame
    page: Path


def publish(records: list[TrialRecord], out_dir: Path, storage_url: str | None, suite_text: str,
            elapsed_s: float | None = None, console=None, study_prefix: str = "", wide: bool = False,
            log_file: str | None = None) -> Publication:
    decided = decision_of(suite_text)
    board, compute = leaderboard(records, decided.tolerance), compute_table(records)
    print_board(board, records, elapsed_s, console, compute, wide=wide, log_file=log_file, prefer=decided.prefer)
    page = write_report(records, board, out_dir, storage_url, suite_text, study_prefix, compute)
    write_leaderboard_files(board, out_dir)
    return Publication(board, page)
