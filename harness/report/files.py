"""Leaderboard exports beside the report: CSV, JSON and Markdown (pandas writes all three)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.records.store import write_text_atomic


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(board):
    """Text cells a spreadsheet would run as a formula (=, +, -, @ first: a user's label such as
    '=HYPERLINK(...)') get a leading apostrophe, as OWASP advises for CSV exports; numbers stay numbers."""
    safe = board.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v)
    return safe


def write_leaderboard_files(board: pd.DataFrame, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "leaderboard.csv", spreadsheet_safe(board).to_csv(index=False))
    write_text_atomic(folder / "leaderboard.json", board.to_json(orient="records", indent=2))
    write_text_atomic(folder / "leaderboard.md", board.drop(columns=["reason"], errors="ignore").to_markdown(index=False))
    return folder / "leaderboard.csv"
