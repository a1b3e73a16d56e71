"""Predicted against measured training memory, per method: each record's estimate (made before the
trial ran, harness/estimate) beside the peak it measured. The table and chart of the report."""

from __future__ import annotations

import statistics

import pandas as pd

from harness.records.schema import TrialRecord, measured_train_bytes

MIB = 2**20


def estimate_table(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per method: records with both numbers, median predicted and measured MiB, the median
    ratio and the largest miss, and skipped trials (predicted not to fit)."""
    rows = []
    by_method: dict[str, list[TrialRecord]] = {}
    for r in records:
        if (r.estimate or {}).get("predicted_peak_bytes"):
            by_method.setdefault(r.method, []).append(r)
    for method, recs in by_method.items():
        measured = [r for r in recs if r.status == "complete" and measured_train_bytes(r)]
        ratios = [r.estimate["predicted_peak_bytes"] / measured_train_bytes(r) for r in measured]
        rows.append({"method": method, "records": len(measured),
                     "skipped": sum(r.status == "skipped" for r in recs),
                     "predicted_mib": statistics.median(r.estimate["predicted_peak_bytes"] for r in recs) / MIB,
                     "measured_mib": statistics.median(measured_train_bytes(r) for r in measured) / MIB
                     if measured else None,
                     "ratio": statistics.median(ratios) if ratios else None,
                     "worst": max(ratios, key=lambda x: abs(x - 1)) if ratios else None})
    return pd.DataFrame(rows)


def estimate_points(records: list[TrialRecord]) -> list[tuple[str, float, float, str]]:
    """(method, predicted MiB, measured MiB, cell) of every complete record that has both."""
    return [(r.method, r.estimate["predicted_peak_bytes"] / MIB, measured_train_bytes(r) / MIB, r.cell_id)
            for r in records if r.status == "complete" and (r.estimate or {}).get("predicted_peak_bytes")
            and measured_train_bytes(r)]
