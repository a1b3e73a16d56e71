"""Records -> leaderboard: per (task, model, method) the best complete trial by the objective."""

from __future__ import annotations

import pandas as pd

from harness.records.schema import TrialRecord

MiB = 1024 * 1024


def records_frame(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per trial with the columns every view uses."""
    rows = []
    for r in records:
        row = {
            "task": r.task, "model": r.model, "method": r.method, "family": r.method_family,
            "trial": r.trial_number, "seed": r.seed, "status": r.status, "reason": r.reason or "",
            "objective_metric": r.objective_metric, "direction": r.objective_direction,
            "objective": r.objective, "trainable_params": r.trainable_params, "total_params": r.total_params,
            "trainable_pct": r.trainable_pct, "train_s": r.timing.train_s, "eval_s": r.timing.eval_s,
            "total_s": r.timing.total_s, "overhead_s": r.timing.overhead_s,
            "tokens_per_s": r.throughput.train_tokens_per_s, "peak_mib": r.memory.peak_bytes / MiB,
            "memory_source": r.memory.source,
        }
        row.update({f"metric:{k}": v for k, v in r.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard(records: list[TrialRecord]) -> pd.DataFrame:
    """Best complete trial per (task, model, method), ranked within each (task, model); methods
    with no complete trial stay on the board with empty metrics."""
    df = records_frame(records)
    if df.empty:
        return df
    keys = ["task", "model", "method"]
    counts = df.groupby(keys, sort=False).agg(
        trials=("status", "size"), complete=("status", lambda s: int((s == "complete").sum())),
        family=("family", "first"), objective_metric=("objective_metric", "first"),
        direction=("direction", "first")).reset_index()
    maximize = df.direction.iloc[0] == "maximize"
    done = df[(df.status == "complete") & df.objective.notna()]
    best = (done.sort_values("objective", ascending=not maximize, kind="stable")
            .groupby(keys, sort=False).head(1)
            .drop(columns=["family", "objective_metric", "direction"]))
    board = counts.merge(best, on=keys, how="left")
    board["rank"] = board.groupby(["task", "model"])["objective"].rank(ascending=not maximize, method="min")
    return board.sort_values(["task", "model", "rank"], na_position="last", kind="stable").reset_index(drop=True)


def metric_columns(board: pd.DataFrame) -> list[str]:
    return [c for c in board.columns if c.startswith("metric:")]
