"""Which records a cell is reported by, decided in one place for the sweep (what to confirm), the
leaderboard and compare: the complete search trial with the best validation score (the earliest on
a tie), and the confirmation runs of that trial. The test split takes no part in the choice."""

from __future__ import annotations

from harness.records.schema import TrialRecord


def best_search_trial(records: list[TrialRecord], direction: str | None = None) -> TrialRecord | None:
    search = [r for r in records if r.phase == "search" and r.status == "complete" and r.selection_score is not None]
    if not search:
        return None
    sign = 1 if (direction or search[0].objective_direction) == "maximize" else -1
    return min(search, key=lambda r: (-sign * r.selection_score, r.trial_number))


def chosen_runs(records: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """Per cell: the chosen trial's confirmation runs where it has any, else the chosen trial itself."""
    by_cell: dict[str, list[TrialRecord]] = {}
    for r in records:
        by_cell.setdefault(r.cell_id, []).append(r)
    out = {}
    for cell, rs in by_cell.items():
        best = best_search_trial(rs)
        if best is None:
            continue
        confirm = [r for r in rs if r.phase == "confirm" and r.status == "complete" and r.objective is not None
                   and r.trial_number == best.trial_number]
        out[cell] = confirm or [best]
    return out


def chosen_ids(records: list[TrialRecord]) -> set[int]:
    """id() of every record a leaderboard row is built from (the chosen trial and its confirmations)."""
    ids = set()
    by_cell: dict[str, list[TrialRecord]] = {}
    for r in records:
        by_cell.setdefault(r.cell_id, []).append(r)
    for rs in by_cell.values():
        best = best_search_trial(rs)
        if best is not None:
            ids.add(id(best))
            ids |= {id(r) for r in rs if r.phase == "confirm" and r.trial_number == best.trial_number}
    return ids


def skipped_cells(records: list[TrialRecord]) -> dict[str, str]:
    """cell -> reason, for cells whose every search trial was skipped (predicted not to fit): never
    started, so listed as skipped rather than as failed, by the sweep's exit code and by compare."""
    by_cell: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.phase == "search":
            by_cell.setdefault(r.cell_id, []).append(r)
    return {cell: runs[0].reason or "skipped" for cell, runs in by_cell.items()
            if all(r.status == "skipped" for r in runs)}
