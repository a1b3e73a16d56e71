"""Preference tasks: per task, model and method, the objective, its beta and the reference the policy
was held to (the base with adapters switched off, or a frozen copy of the weights, with its size),
beside the median training memory, so a method's reference cost reads next to its scores."""

from __future__ import annotations

import statistics

from harness.records.schema import TrialRecord

MIB = 2**20


def preference_rows(records: list[TrialRecord]) -> list[dict]:
    cells: dict[tuple, list[TrialRecord]] = {}
    for r in records:
        if r.preference and r.status == "complete":
            cells.setdefault((r.task, r.model, r.method), []).append(r)
    rows = []
    for (task, model, method), recs in cells.items():
        note = recs[0].preference
        train = [r.memory.train_bytes / MIB for r in recs if r.memory.train_bytes]
        rows.append({"task": task, "model": model, "method": method, "objective": note.get("objective", ""),
                     "beta": "—" if note.get("beta") is None else f"{note['beta']:g}",
                     "reference": note.get("reference", "none (the objective has no reference)"),
                     "reference_mib": f"{note['reference_bytes'] / MIB:,.0f}" if "reference_bytes" in note else "—",
                     "train_mib": f"{statistics.median(train):,.0f}" if train else "—", "trials": len(recs)})
    return rows
