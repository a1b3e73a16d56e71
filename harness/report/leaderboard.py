"""Records -> leaderboard: per (task, model, method) the best complete search trial by the
objective; where the best configuration was re-run with several seeds (confirmation), the seed
mean with a 95% confidence interval, and whether a paired t-test across seeds can tell the method
apart from the best one."""

from __future__ import annotations

import math

import pandas as pd

from harness.records.schema import TrialRecord

MiB = 1024 * 1024
KEYS = ["task", "model", "method"]
MEASURES = ["objective", "trainable_params", "total_params", "trainable_pct", "train_s", "eval_s", "total_s",
            "overhead_s", "tokens_per_s", "peak_mib", "train_joules", "artifact_mib"]


def records_frame(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per record with the columns every view uses (the views read the frame, never the
    records again)."""
    rows = []
    for r in records:
        low, high = _metric_range(r.task_kind) or (None, None)
        row = {
            "task": r.task, "task_kind": r.task_kind, "model": r.model, "method": r.method, "family": r.method_family,
            "trial": r.trial_number, "seed": r.seed, "phase": r.phase, "status": r.status, "reason": r.reason or "",
            "objective_metric": r.objective_metric, "direction": r.objective_direction,
            "objective": r.objective, "trainable_params": r.trainable_params, "total_params": r.total_params,
            "trainable_pct": r.trainable_pct, "train_s": r.timing.train_s, "eval_s": r.timing.eval_s,
            "total_s": r.timing.total_s, "overhead_s": r.timing.overhead_s,
            "tokens_per_s": r.throughput.train_tokens_per_s, "peak_mib": r.memory.peak_bytes / MiB,
            "memory_source": r.memory.source, "train_joules": r.energy.train_joules,
            "artifact_mib": r.artifact_bytes / MiB if r.status == "complete" else None,
            "metric_low": low, "metric_high": high,  # the range every metric of the task lies in
        }
        row.update({f"metric:{k}": v for k, v in r.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def mean_ci95(values: list[float], bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Mean and the two ends of its 95% confidence interval (Student's t; the interval is the mean
    itself for a single value), clipped to the metric's possible range where it has one."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, low, high


def paired_p(a: pd.Series, b: pd.Series) -> float:
    """Two-sided paired t-test across the seeds both methods ran (1.0 where it cannot tell)."""
    from scipy import stats

    joined = pd.concat([a, b], axis=1, join="inner").dropna()
    if len(joined) < 2:
        return float("nan")
    diff = joined.iloc[:, 0] - joined.iloc[:, 1]
    if (diff == 0).all():
        return 1.0
    return float(stats.ttest_rel(joined.iloc[:, 0], joined.iloc[:, 1]).pvalue)


def _metric_range(task_kind: str) -> tuple[float, float] | None:
    from harness.tasks import TASKS

    return TASKS.get(task_kind).metric_range if task_kind in TASKS else None


def _confirmed(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means and intervals of the confirmation runs, one row per (task, model, method)."""
    conf = df[(df.phase == "confirm") & (df.status == "complete") & df.objective.notna()]
    rows = []
    for key, part in conf.groupby(KEYS, sort=False):
        first = part.iloc[0]
        bounds = None if pd.isna(first.metric_low) else (first.metric_low, first.metric_high)
        mean, low, high = mean_ci95(list(part.objective), bounds)
        row = dict(zip(KEYS, key), seeds=len(part), ci_low=low, ci_high=high)
        for col in MEASURES + [c for c in part.columns if c.startswith("metric:")]:
            row[col] = part[col].mean()
        row["objective"] = mean
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard(records: list[TrialRecord]) -> pd.DataFrame:
    df = records_frame(records)
    if df.empty:
        return df
    counts = df[df.phase == "search"].groupby(KEYS, sort=False).agg(
        trials=("status", "size"), complete=("status", lambda s: int((s == "complete").sum())),
        family=("family", "first"), objective_metric=("objective_metric", "first"),
        direction=("direction", "first")).reset_index()
    maximize = df.direction.iloc[0] == "maximize"
    search = df[(df.phase == "search") & (df.status == "complete") & df.objective.notna()]
    best = (search.sort_values("objective", ascending=not maximize, kind="stable")
            .groupby(KEYS, sort=False).head(1)
            .drop(columns=["family", "objective_metric", "direction", "phase"]))
    board = counts.merge(best, on=KEYS, how="left")
    board["seeds"], board["ci_low"], board["ci_high"], board["p_vs_best"] = 0, math.nan, math.nan, math.nan
    board["tied_with_best"] = None
    confirmed = _confirmed(df)
    if not confirmed.empty:
        board = board.set_index(KEYS)
        conf = confirmed.set_index(KEYS)
        for col in conf.columns:
            board.loc[conf.index, col] = conf[col]
        board = board.reset_index()
        _mark_ties(board, df, maximize)
    board["rank"] = board.groupby(["task", "model"])["objective"].rank(ascending=not maximize, method="min")
    return board.sort_values(["task", "model", "rank"], na_position="last", kind="stable").reset_index(drop=True)


def _mark_ties(board: pd.DataFrame, df: pd.DataFrame, maximize: bool) -> None:
    """tied_with_best: a paired t-test across seeds (p >= 0.05) cannot tell this method from the best."""
    conf = df[(df.phase == "confirm") & (df.status == "complete")]
    for (task, model), part in board[board.seeds > 0].groupby(["task", "model"], sort=False):
        best = part.sort_values("objective", ascending=not maximize).iloc[0]["method"]
        by_seed = {m: conf[(conf.task == task) & (conf.model == model) & (conf.method == m)].set_index("seed")["objective"]
                   for m in part.method}
        for idx, row in part.iterrows():
            p = 1.0 if row.method == best else paired_p(by_seed[best], by_seed[row.method])
            board.at[idx, "tied_with_best"] = bool(p >= 0.05) if not math.isnan(p) else None
            board.at[idx, "p_vs_best"] = p


def metric_columns(board: pd.DataFrame) -> list[str]:
    return [c for c in board.columns if c.startswith("metric:")]
