"""What a cell's search spent against what its full grid would have spent: under a multi-fidelity
strategy (search.strategy) pruned trials stop at a rung, and this is the saving a team pays for.
Steps are counted exactly (under sha with the steps a configuration repeats when trained again at a
higher rung); the full grid's seconds are an estimate at the cell's own measured seconds per training
step at its full max_length (confirmation runs train to the end under every strategy and are not in
these figures)."""

from __future__ import annotations

import pandas as pd

from harness.records.schema import TrialRecord


def _earlier(r: TrialRecord) -> list[dict]:
    """Under sha (runner/halving.py) a configuration's record is its latest run; the runs before it,
    whose steps it repeated, are compute spent too."""
    return (r.halving or {}).get("earlier_runs", [])


def search_trials_by_cell(records: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """The search trials of each trained cell (baseline rows do not train), in record order."""
    cells: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.phase == "search" and r.method_family != "baseline":
            cells.setdefault(r.cell_id, []).append(r)
    return cells


def _runs(r: TrialRecord) -> list[dict]:
    """Every run behind a record: its earlier ones (sha) and its own, each with steps, seconds and length."""
    return [*_earlier(r), r.run_summary()]


def compute_table(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per trained cell: trials (configurations), runs (sha trains a configuration again at each
    rung it reaches), pruned, train steps spent (repeated ones included) / the full grid's, train and
    in-loop validation seconds spent, the full grid's train seconds (estimated) and the share spent.
    The full grid's seconds are estimated at the seconds per step of the runs at the cell's full
    max_length: runs at a shorter rung length (search.rung_max_length) step faster than the grid would."""
    rows = []
    for cell_id, trials in search_trials_by_cell(records).items():
        first = trials[0]
        max_steps = int(first.config.get("training", {}).get("max_steps") or 0)
        runs = [run for r in trials for run in _runs(r)]
        steps = sum(int(run.get("train_steps") or 0) for run in runs)
        full_steps = max_steps * len(trials)
        train_s = sum(run.get("train_s") or 0.0 for run in runs)
        longest = max((run.get("max_length") or 0 for run in runs), default=0)
        full = [run for run in runs if (run.get("max_length") or 0) == longest and run.get("train_steps")]
        full_steps_run = sum(int(run["train_steps"]) for run in full)
        per_step = (sum(run.get("train_s") or 0.0 for run in full) / full_steps_run if full_steps_run
                    else train_s / steps if steps else float("nan"))
        rows.append({
            "cell_id": cell_id, "task": first.task, "model": first.model, "method": first.method,
            "strategy": first.config.get("search", {}).get("strategy", "none"),
            "trials": len(trials), "pruned": sum(r.status == "pruned" for r in trials), "runs": len(runs),
            "steps": steps, "repeated_steps": sum(int(e.get("train_steps") or 0) for r in trials for e in _earlier(r)),
            "short_steps": steps - sum(int(run.get("train_steps") or 0) for run in runs
                                       if (run.get("max_length") or 0) == longest),
            "full_steps": full_steps, "step_share": steps / full_steps if full_steps else float("nan"),
            "train_s": train_s, "validation_s": sum(run.get("validation_s") or 0.0 for run in runs),
            "full_train_s_est": per_step * full_steps,
        })
    return pd.DataFrame(rows)


def compute_lines(table: pd.DataFrame) -> list[str]:
    """The terminal's and the report's summary: one line per task and model."""
    if table.empty or not (table["pruned"] > 0).any():
        return []
    out = []
    for (task, model), part in table.groupby(["task", "model"], sort=False):
        steps, full = int(part["steps"].sum()), int(part["full_steps"].sum())
        repeated = int(part["repeated_steps"].sum())
        again = f" (of which {repeated:,} repeated by configurations trained again at a higher rung)" if repeated else ""
        short = int(part["short_steps"].sum())
        again += f", {short:,} of them at a shorter rung max_length" if short else ""
        out.append(f"{task} · {model}: the search trained {steps:,} of the full grid's {full:,} steps "
                   f"({steps / full:.0%}){again}, {int(part['pruned'].sum())} of {int(part['trials'].sum())} "
                   f"trials stopped at a rung; {part['train_s'].sum():.0f} s of training against an estimated "
                   f"{part['full_train_s_est'].sum():.0f} s")
    return out


def judged_by(record: TrialRecord) -> tuple[str, bool]:
    """(metric, lower is better) the search's rungs judged this record's cell by: config.search.rung_metric
    (a task family's validation loss, or the objective; records before it: the objective)."""
    metric = (record.config.get("search") or {}).get("rung_metric") or record.objective_metric
    # search.rung_metric is a loss (minimized) or the objective, which goes its own way
    return metric, metric != record.objective_metric or record.objective_direction == "minimize"


def rung_lines(records: list[TrialRecord]) -> list[str]:
    """Under sha, how far apart each rung's promotion was: the last configuration kept and the best one
    left behind, by the metric the rung judged (search.rung_metric), in standard errors of their
    difference (each score's own, over the validation examples). Under 2 SE the rung could not tell
    them apart, and a reader should know that the cut there was close to a coin toss."""
    import math

    out = []
    for trials in search_trials_by_cell(records).values():
        first = trials[0]
        search = first.config.get("search") or {}
        if search.get("strategy") != "sha" or not all(r.halving for r in trials):
            continue
        metric, lower = judged_by(first)
        for rung, step in enumerate(search.get("rungs") or []):
            scored = []
            for r in trials:
                if r.halving["rung"] < rung:
                    continue
                point = next((h for h in r.history if h.get("step") == step and f"validation_{metric}" in h), None)
                if point is not None:
                    scored.append((r.halving["rung"] > rung, point[f"validation_{metric}"],
                                   point.get(f"validation_{metric}_se", math.nan)))
            kept = [x for x in scored if x[0]]
            left = [x for x in scored if not x[0]]
            if not kept or not left:
                continue
            worse = (lambda x: x[1]) if lower else (lambda x: -x[1])  # larger is worse
            last, best_left = max(kept, key=worse), min(left, key=worse)
            se = math.hypot(last[2], best_left[2])
            apart = abs(best_left[1] - last[1]) / se if se > 0 else math.nan
            verdict = ("" if math.isnan(apart) else
                       f": {apart:.1f} SE apart" + (" (within noise: the rung could not tell them apart)" if apart < 2 else ""))
            out.append(f"{first.task} · {first.model} · {first.method}, rung {rung + 1} (step {step}): kept {len(kept)} "
                       f"of {len(scored)} by validation {metric}; the last kept {last[1]:.4g}, the best left "
                       f"{best_left[1]:.4g}{verdict}")
    return out
