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
    """Best complete trial per (task, model, method), ranked within each (task, model)."""
    df = records_frame(records)
    if df.empty:
        return df
    counts = df.groupby(["task", "model", "method"]).agg(
        trials=("status", "size"), complete=("status", lambda s: int((s == "complete").sum())))
    done = df[(df.status == "complete") & df.objective.notna()].copy()
    if done.empty:
        best = counts.reset_index()
    else:
        maximize = done.direction.iloc[0] == "maximize"
        done = done.sort_values("objective", ascending=not maximize, kind="stable")
        best = done.groupby(["task", "model", "method"], sort=False).head(1)
        best = best.merge(counts.reset_index(), on=["task", "model", "method"], how="right")
    best["rank"] = best.groupby(["task", "model"])["objective"].rank(
        ascending=best["direction"].iloc[0] != "maximize" if "direction" in best and best["direction"].notna().any() else False,
        method="min")
    return best.sort_values(["task", "model", "rank"], na_position="last").reset_index(drop=True)


def metric_columns(board: pd.DataFrame) -> list[str]:
    return [c for c in board.columns if c.startswith("metric:")]
