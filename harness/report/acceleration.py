"""Each method under each acceleration option against its eager baseline (the suite's
acceleration_axis): the speed-up in train tokens/s and the change in training memory, per task,
model and method. Figures are medians over a cell's complete trials (the hyper-parameters a search
draws do not change a step's cost: every trial of a cell trains the same shapes); compile time is
shown apart, since it is left out of train time. Trials on a busy host are left out of the speed
figures, as in `harness compare`."""

from __future__ import annotations

import statistics

import pandas as pd

from harness.records.schema import TrialRecord
from harness.measure.host import BUSY_SHARE, busy_share

MIB = 2**20


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def acceleration_table(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per trained cell of an acceleration axis: its option label, median tokens/s, train MiB
    and compile seconds, and the ratios to the axis's first entry (eager where it is {}) of the same
    task, model and method."""
    cells: dict[tuple, list[TrialRecord]] = {}
    for r in records:
        a = r.acceleration or {}
        if a.get("axis_index") is None or r.method_family == "baseline" or r.status != "complete":
            continue
        cells.setdefault((r.task, r.model, a.get("base_method", r.method), a["axis_index"], a.get("label", "")),
                         []).append(r)
    rows = []
    for (task, model, method, index, label), recs in sorted(cells.items(), key=lambda kv: kv[0][:4]):
        quiet = [r for r in recs if busy_share(r.host) <= BUSY_SHARE]
        rows.append({"task": task, "model": model, "method": method, "axis_index": index, "option": label,
                     "trials": len(recs), "busy": len(recs) - len(quiet),
                     "tokens_per_s": _median([r.throughput.train_tokens_per_s for r in quiet or recs]),
                     "train_mib": _median([r.memory.train_bytes / MIB for r in recs if r.memory.train_bytes]),
                     "compile_s": _median([r.timing.compile_s for r in recs if r.timing.compile_s]),
                     "cell_id": recs[0].cell_id})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    speedups, memory, baselines = [], [], []
    for row in table.itertuples():
        same = table[(table.task == row.task) & (table.model == row.model) & (table.method == row.method)]
        base = same.sort_values("axis_index").iloc[0]
        speedups.append(row.tokens_per_s / base.tokens_per_s if row.tokens_per_s and base.tokens_per_s else None)
        memory.append(row.train_mib / base.train_mib - 1 if row.train_mib and base.train_mib else None)
        baselines.append(base.option)
    table["speedup"], table["memory_change"], table["baseline"] = speedups, memory, baselines
    return table


def acceleration_rows(table: pd.DataFrame) -> list[dict]:
    """The table as the report's and the terminal's cells."""
    def num(v, fmt):
        return "—" if v is None or pd.isna(v) else fmt.format(v)

    return [{"task": r.task, "model": r.model, "method": r.method, "option": r.option, "trials": r.trials,
             "tokens_per_s": num(r.tokens_per_s, "{:,.0f}") + (f" ({r.busy} on a busy host)" if r.busy else ""),
             "speedup": num(r.speedup, "{:.2f}x"), "train_mib": num(r.train_mib, "{:,.0f}"),
             "memory_change": num(r.memory_change, "{:+.0%}"), "compile_s": num(r.compile_s, "{:.1f}"),
             "baseline": r.baseline} for r in table.itertuples()]
