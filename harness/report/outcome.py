"""How a run ended, on stderr, and its exit code: cells skipped as predicted not to fit, cells with
no complete trial (and why, from their records), and what a smoke run shows."""

from __future__ import annotations

import sys

from harness.plan import SMOKE_EXAMPLES, SMOKE_STEPS
from harness.records.schema import TrialRecord
from harness.records.select import skipped_cells


def cells_verdict(cell_ids: list[str], records: list[TrialRecord], smoke: bool = False) -> int:
    """Exit 1 where a cell ended with no complete trial (its records say why), 0 otherwise."""
    complete = {r.cell_id for r in records if r.status == "complete" and r.phase == "search"}
    # a cell predicted not to fit was never started: listed, and not a failure of the run
    skipped = skipped_cells(records)
    for cell_id in cell_ids:
        if cell_id in skipped:
            print(f"cell {cell_id} skipped: {skipped[cell_id]}", file=sys.stderr)
    missing = [c for c in cell_ids if c not in complete and c not in skipped]
    for cell_id in missing:
        reasons = sorted({f"{r.status}: {(r.reason or '').splitlines()[0][:160]}" for r in records
                          if r.cell_id == cell_id and r.status != "complete"}) or ["no trial ran"]
        print(f"cell {cell_id} has no complete trial ({'; '.join(reasons)})", file=sys.stderr)
    if missing:
        print(f"{len(missing)} of {len(cell_ids)} cells have no complete trial: exit 1", file=sys.stderr)
        return 1
    if smoke:
        print(f"smoke: all {len(cell_ids)} cells trained, validated and were scored on test ({SMOKE_STEPS} steps "
              f"on {SMOKE_EXAMPLES} examples: the numbers above only show that each cell runs)")
    return 0
