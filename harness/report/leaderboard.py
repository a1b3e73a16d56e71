"""Records -> leaderboard: per (task, model, method) the search trial with the best validation
score, shown by its test score; where that configuration was re-run with fresh seeds
(confirmation), the seed mean of the test score with a 95% confidence interval, and the mean paired
difference to the best method with its 90% interval and verdict (report/decide.py). The test split decides nothing here: it is
only what each chosen configuration is reported with (rows are ranked by it, as results are).
Baseline rows (the untrained model, the trivial predictor) are shown, not ranked."""

from __future__ import annotations

import math

import pandas as pd

from harness.records.schema import TrialRecord
from harness.report.decide import DEFAULT_TOLERANCE, LEVEL, verdict

MiB = 1024 * 1024
KEYS = ["task", "model", "method"]
MEASURES = ["objective", "trainable_params", "total_params", "trainable_pct", "train_s", "eval_s", "total_s",
            "overhead_s", "tokens_per_s", "peak_mib", "eval_mib", "absolute_peak_mib", "mfu", "train_joules",
            "artifact_mib", "forgetting", "drift", "repr_drift", "retention_s", "serve_ms", "serve_overhead",
            "serve_mib", "serve_cost", "serving_s", "merge_changed"]


def records_frame(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per record with the columns every view uses (the views read the frame, never the
    records again)."""
    from harness.records.select import chosen_ids

    chosen = chosen_ids(records)
    rows = []
    for r in records:
        low, high = _metric_range(r.task_kind) or (None, None)
        row = {
            "chosen": id(r) in chosen,  # the cell's validation-best trial, or a confirmation run of it
            "selection_score": r.selection_score, "selection": r.selection,
            "duplicates": r.train_test_duplicates, "search_space": _space_text(r.config.get("search_space")),
            "task": r.task, "task_kind": r.task_kind, "model": r.model, "method": r.method, "family": r.method_family,
            "trial": r.trial_number, "seed": r.seed, "phase": r.phase, "status": r.status, "reason": r.reason or "",
            "objective_metric": r.objective_metric, "direction": r.objective_direction,
            "objective": r.objective, "trainable_params": r.trainable_params, "total_params": r.total_params,
            "trainable_pct": r.trainable_pct, "train_s": r.timing.train_s, "eval_s": r.timing.eval_s,
            "total_s": r.timing.total_s, "overhead_s": r.timing.overhead_s,
            "tokens_per_s": r.throughput.train_tokens_per_s, "peak_mib": _train_mib(r),
            "eval_mib": r.memory.eval_bytes / MiB if r.memory.eval_bytes is not None else None,
            "absolute_peak_mib": r.memory.peak_bytes / MiB, "mfu": r.throughput.mfu,
            "busy": float((r.host or {}).get("other_cpu_share") or 0.0),
            "memory_source": r.memory.source, "train_joules": r.energy.train_joules,
            "artifact_mib": r.artifact_bytes / MiB if r.status == "complete" else None,
            "metric_low": low, "metric_high": high,  # the range every metric of the task lies in
            # the interval a confirmation run's verdicts are read at (harness/sequential.py; 90% with fixed seeds)
            "level": (r.confirmation or {}).get("level", LEVEL),
            # a trial over several ranks: strategy x N (train MiB is then the largest rank's)
            "ranks": f"{r.distributed.strategy} x{r.distributed.processes}" if r.distributed else "",
            **_retention(r), **_serving(r),
        }
        row.update({f"metric:{k}": v for k, v in r.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def method_text(row) -> str:
    """The method as a table shows it: with its ranks where it trained over several (full (fsdp x4))."""
    ranks = row.get("ranks")
    return f"{row['method']} ({ranks})" if isinstance(ranks, str) and ranks else str(row["method"])


def _retention(r: TrialRecord) -> dict:
    """What training made the model forget (records.schema.Retention): forgetting with its 95% interval over
    the general-text documents, drift (KL to the base) and representation drift; NaN where not measured."""
    ret = r.retention if r.status == "complete" else None
    forgetting = ret.forgetting if ret is not None and ret.forgetting is not None else math.nan
    se = ret.forgetting_se if ret is not None and ret.forgetting_se is not None else math.nan
    return {"forgetting": forgetting, "forgetting_low": forgetting - 1.96 * se, "forgetting_high": forgetting + 1.96 * se,
            "drift": ret.drift if ret is not None and ret.drift is not None else math.nan,
            "repr_drift": ret.representation_drift if ret is not None and ret.representation_drift is not None
            else math.nan, "retention_s": r.timing.retention_s}


def _serving(r: TrialRecord) -> dict:
    """What the variant a team would ship costs to serve (records.schema.Serving): decoders' decode ms per
    token at batch 1 (other heads: ms per example at batch 1), its overhead against the base in %, its
    memory (weights + working set), USD per 1M generated tokens; NaN where not profiled."""
    serving = r.serving if r.status == "complete" and r.serving is not None and r.serving.error is None else None
    shipped = serving.shipped if serving is not None else None
    from harness.report.engines import artifact_key

    out = {"serve_ms": math.nan, "serve_overhead": math.nan, "serve_mib": math.nan, "serve_cost": math.nan,
           "serving_s": r.timing.serving_s, "merge_changed": math.nan, "serve_variant": None, "serve_mode": None,
           "artifact": artifact_key(r.method_name, r.params)}
    if shipped is None:
        return out
    out["serve_variant"], out["serve_mode"] = shipped.name, serving.mode
    if shipped.decode_ms_per_token is not None:
        out["serve_ms"] = shipped.decode_ms_per_token
    elif shipped.examples_per_s:
        out["serve_ms"] = 1000.0 / shipped.examples_per_s
    out["serve_overhead"] = shipped.overhead_pct if shipped.overhead_pct is not None else math.nan
    out["serve_mib"] = shipped.peak_bytes / MiB
    out["serve_cost"] = serving.cost_per_million_tokens if serving.cost_per_million_tokens is not None else math.nan
    if serving.merge_check:
        out["merge_changed"] = serving.merge_check.get("predictions_changed", math.nan)
    return out


def _train_mib(r: TrialRecord) -> float | None:
    """The train phase's peak above the baseline (memory definitions 2+; none for a row that does
    not train, such as the untrained and trivial baselines); a record of definition 1 has only its
    whole-trial absolute peak."""
    if r.definitions.get("peak_memory", 1) >= 2:
        return r.memory.train_bytes / MiB if r.memory.train_bytes is not None else None
    return r.memory.peak_bytes / MiB


def _space_text(space: dict | None) -> str:
    parts = []
    for name, dim in (space or {}).items():
        if dim.get("choices") is not None:
            parts.append(f"{name}∈{{{', '.join(map(str, dim['choices']))}}}")
        else:
            parts.append(f"{name}∈[{dim['low']:g}, {dim['high']:g}]{' log' if dim.get('log') else ''}")
    return ", ".join(parts) or "fixed"


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


def paired_difference(a: pd.Series, b: pd.Series) -> tuple[float, float, float, float, int]:
    """Mean of a - b over the seeds both ran, its 95% interval (Student's t over the paired
    differences) and the two-sided p-value; NaNs where fewer than two seeds pair up."""
    from scipy import stats

    joined = pd.concat([a, b], axis=1, join="inner").dropna()
    n = len(joined)
    if n < 2:
        return math.nan, math.nan, math.nan, math.nan, n
    diff = joined.iloc[:, 0] - joined.iloc[:, 1]
    mean = float(diff.mean())
    if (diff == diff.iloc[0]).all():
        return mean, mean, mean, 1.0 if mean == 0 else 0.0, n
    half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, float(stats.ttest_rel(joined.iloc[:, 0], joined.iloc[:, 1]).pvalue), n


def _metric_range(task_kind: str) -> tuple[float, float] | None:
    from harness.tasks import TASKS

    return TASKS.get(task_kind).metric_range if task_kind in TASKS else None


def _confirmed(conf: pd.DataFrame) -> pd.DataFrame:
    """Seed means and intervals of the confirmation runs, one row per (task, model, method)."""
    rows = []
    for key, part in conf.groupby(KEYS, sort=False):
        first = part.iloc[0]
        bounds = None if pd.isna(first.metric_low) else (first.metric_low, first.metric_high)
        mean, low, high = mean_ci95(list(part.objective), bounds)
        row = dict(zip(KEYS, key), seeds=len(part), ci_low=low, ci_high=high)
        for col in MEASURES + [c for c in part.columns if c.startswith("metric:")]:
            row[col] = part[col].mean()
        row["busy"] = part["busy"].max()
        row["objective"] = mean
        row["ranks"] = first["ranks"]
        for col in ("serve_variant", "serve_mode"):  # from the run that was profiled (serving.runs)
            profiled = part[col].dropna()
            row[col] = profiled.iloc[0] if len(profiled) else None
        forgot = [v for v in part["forgetting"] if not pd.isna(v)]
        if len(forgot) >= 2:  # over seeds: each seed's forgetting is one draw of what training does
            _, row["forgetting_low"], row["forgetting_high"] = mean_ci95(forgot)
        elif forgot:
            row["forgetting_low"], row["forgetting_high"] = part["forgetting_low"].iloc[0], part["forgetting_high"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard(records: list[TrialRecord], tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """One row per task x model x method; confirmed rows carry their verdict against the best at this
    tolerance (report/decide.py)."""
    df = records_frame(records)
    if df.empty:
        return df
    counts = df[df.phase == "search"].groupby(KEYS, sort=False).agg(
        trials=("status", "size"), complete=("status", lambda s: int((s == "complete").sum())),
        skipped=("status", lambda s: bool((s == "skipped").all())),
        family=("family", "first"), objective_metric=("objective_metric", "first"),
        direction=("direction", "first"), search_space=("search_space", "first"),
        duplicates=("duplicates", "max")).reset_index()
    best = df[df.chosen & (df.phase == "search")]
    board = counts.merge(best.drop(columns=["family", "objective_metric", "direction", "phase", "search_space",
                                            "duplicates", "chosen"]), on=KEYS, how="left")
    board["test_selected"] = board["selection"] == "test"
    for col in ("seeds", "ci_low", "ci_high", "diff_vs_best", "diff_low", "diff_high", "p_vs_best", "more_seeds"):
        board[col] = 0 if col == "seeds" else math.nan
    board["verdict"], board["tolerance"], board["level"] = None, tolerance, LEVEL
    conf = df[df.chosen & (df.phase == "confirm") & (df.status == "complete") & df.objective.notna()]
    confirmed = _confirmed(conf)
    if not confirmed.empty:
        board = board.set_index(KEYS)
        stats_ = confirmed.set_index(KEYS)
        for col in stats_.columns:
            board.loc[stats_.index, col] = stats_[col]
        board = board.reset_index()
    board["reference"] = board["family"] == "baseline"
    board["_score"] = [v if d == "maximize" else -v for v, d in zip(board.objective, board.direction)]
    methods = board[~board.reference]
    board["rank"] = methods.groupby(["task", "model"])["_score"].rank(ascending=False, method="min")
    _paired_to_best(board, conf, tolerance)
    board["forgets"] = board["forgetting"].where(board["forgetting"].notna(), board["repr_drift"])
    board = board.sort_values(["task", "model", "_score"], ascending=[True, True, False], na_position="last",
                              kind="stable")
    return board.drop(columns=["_score"]).reset_index(drop=True)


def _paired_to_best(board: pd.DataFrame, conf: pd.DataFrame, tolerance: float) -> None:
    """Each confirmed method's test score minus the best method's, paired by seed: its mean, its 90%
    interval and the verdict it gives at this tolerance (equivalent, worse, better, undecided, with the
    seeds that would likely decide an undecided one), so a reader sees how large the gap could be, not
    only whether a test found one."""
    for (task, model), part in board[(board.seeds > 0) & ~board.reference].groupby(["task", "model"], sort=False):
        best = part.loc[part["rank"].idxmin(), "method"]
        group = conf[(conf.task == task) & (conf.model == model)]
        level = float(group["level"].max())  # seeds: auto reads every look at a Bonferroni-corrected level
        by_seed = {m: group[group.method == m].set_index("seed")["objective"] for m in part.method}
        for idx, row in part.iterrows():
            board.at[idx, "level"] = level
            if row.method == best:
                board.at[idx, "verdict"] = "best"
                continue
            joined = pd.concat([by_seed[row.method], by_seed[best]], axis=1, join="inner").dropna()
            found = verdict(list(joined.iloc[:, 0] - joined.iloc[:, 1]), tolerance, row.direction == "maximize",
                            level)
            p = paired_difference(by_seed[row.method], by_seed[best])[3]
            if found is None:  # fewer than two seeds pair up: no interval, no verdict
                continue
            board.loc[idx, ["diff_vs_best", "diff_low", "diff_high", "p_vs_best"]] = [found.mean, found.low,
                                                                                     found.high, p]
            board.at[idx, "verdict"] = found.word
            board.at[idx, "more_seeds"] = math.nan if found.more_seeds is None else found.more_seeds


def metric_columns(board: pd.DataFrame) -> list[str]:
    return [c for c in board.columns if c.startswith("metric:")]
