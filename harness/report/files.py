"""Leaderboard exports beside the report: CSV, JSON and Markdown (pandas writes all three)."""

from __future__ import annotations

from pathlib import Path

from harness.records.schema import TrialRecord
from harness.records.store import write_text_atomic
from harness.report.leaderboard import leaderboard


def write_leaderboard_files(records: list[TrialRecord], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    board = leaderboard(records)
    write_text_atomic(folder / "leaderboard.csv", board.to_csv(index=False))
    write_text_atomic(folder / "leaderboard.json", board.to_json(orient="records", indent=2))
    write_text_atomic(folder / "leaderboard.md", board.drop(columns=["reason"], errors="ignore").to_markdown(index=False))
    return folder / "leaderboard.csv"
