"""Plotly figures for the report: Pareto fronts, Optuna's search views, training curves. Returned as
plain JSON dicts; the page loads plotly.js once and draws every figure from them."""

from __future__ import annotations

import pandas as pd

from harness.records.schema import TrialRecord
from harness.records.studies import StudyKey
from harness.report.compute import judged_by, search_trials_by_cell
from harness.report.pages import figure_json

PARETO_AXES = (("peak_mib", "train memory above baseline (MiB)"), ("train_s", "train time (s)"),
               ("trainable_params", "trainable parameters"))


def pareto_front(points: list[tuple[float, float]], maximize: bool) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and quality. A dozen lines,
    so written here rather than reaching into optuna's private multi-objective helpers."""
    front = []
    for i, (cost, quality) in enumerate(points):
        dominated = False
        for j, (c2, q2) in enumerate(points):
            better_q = q2 > quality if maximize else q2 < quality
            same_or_better_q = q2 >= quality if maximize else q2 <= quality
            if j != i and c2 <= cost and same_or_better_q and (c2 < cost or better_q):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_figures(board: pd.DataFrame) -> list[dict]:
    import plotly.graph_objects as go

    figures = []
    done = board[board["objective"].notna()]
    for (task, model), part in done.groupby(["task", "model"], sort=False):
        metric = part["objective_metric"].iloc[0]
        maximize = part["direction"].iloc[0] == "maximize"
        for column, label in PARETO_AXES:
            points = list(zip(part[column].astype(float), part["objective"].astype(float)))
            front = pareto_front(points, maximize)
            fig = go.Figure()
            fig.add_trace(go.Scatter(x=part[column], y=part["objective"], mode="markers+text",
                                     text=part["method"], textposition="top center", name="methods"))
            fig.add_trace(go.Scatter(x=[points[i][0] for i in front], y=[points[i][1] for i in front],
                                     mode="lines", line={"dash": "dot"}, name="Pareto front"))
            fig.update_layout(title=f"{task} · {model}: {metric} vs {label}", xaxis_title=label, yaxis_title=metric,
                              height=380, margin={"t": 50, "l": 60, "r": 20, "b": 50}, showlegend=False)
            if column == "trainable_params":
                fig.update_xaxes(type="log")
            figures.append({"id": f"pareto-{len(figures)}", "figure": figure_json(fig)})
    return figures


def retention_figures(records: list[TrialRecord]) -> list[dict]:
    """Learning vs forgetting per task x model (Biderman et al., 2024, fig. 1): one point per run the
    leaderboard reads (each confirmation seed, else the validation-best trial), one colour per method;
    x: forgetting on general text (decoder LMs) or representation drift (other heads), y: the test score."""
    import plotly.graph_objects as go

    from harness.report.leaderboard import records_frame

    df = records_frame(records)
    if df.empty:
        return []
    df = df[df.chosen & (df.status == "complete") & df.objective.notna()]
    figures = []
    for (task, model), part in df.groupby(["task", "model"], sort=False):
        confirmed = part[part.phase == "confirm"]
        methods = set(confirmed.method)
        part = pd.concat([confirmed, part[(part.phase == "search") & ~part.method.isin(methods)]])
        column, label = ("forgetting", "forgetting: NLL on general text, after - before (nats/token)") \
            if part["forgetting"].notna().any() else ("repr_drift", "representation drift (1 - linear CKA)")
        part = part[part[column].notna()]
        if part.empty:
            continue
        fig = go.Figure()
        for method, runs in part.groupby("method", sort=False):
            error = None
            if column == "forgetting":
                error = {"type": "data", "array": list(runs["forgetting_high"] - runs["forgetting"]), "visible": True}
            fig.add_trace(go.Scatter(x=runs[column], y=runs["objective"], mode="markers", name=str(method),
                                     error_x=error, text=[f"seed {s}" for s in runs["seed"]]))
        metric = part["objective_metric"].iloc[0]
        fig.update_layout(title=f"{task} · {model}: learning ({metric}) vs forgetting", xaxis_title=label,
                          yaxis_title=f"test {metric}", height=380, margin={"t": 50, "l": 60, "r": 20, "b": 50})
        figures.append({"id": f"retention-{len(figures)}", "figure": figure_json(fig)})
    return figures


def search_figures(storage_url: str, prefix: str = "") -> list[dict]:
    """Each search study's optimization history and, where it can be computed, parameter
    importances (confirmation studies, and other suites' studies in a shared database, left out)."""
    import optuna
    from optuna.visualization import plot_optimization_history, plot_param_importances

    figures = []
    for summary in optuna.get_all_study_summaries(storage_url):
        if not summary.study_name.startswith(prefix) or StudyKey.parse(summary.study_name, prefix).phase == "confirm":
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            continue
        fig = plot_optimization_history(study)
        fig.update_layout(title=f"{summary.study_name}: optimization history", height=320)
        figures.append({"id": f"history-{len(figures)}", "figure": figure_json(fig)})
        if len(complete) >= 2 and len(complete[0].params) >= 1:
            try:
                fig = plot_param_importances(study)
            except (ValueError, RuntimeError):  # e.g. every trial had the same value
                continue
            fig.update_layout(title=f"{summary.study_name}: hyper-parameter importances", height=280)
            figures.append({"id": f"importance-{len(figures)}", "figure": figure_json(fig)})
    return figures


def curve_figures(records: list[TrialRecord], board: pd.DataFrame) -> list[dict]:
    """Training loss (and validation metrics where evaluated) of each method's best trial."""
    import plotly.graph_objects as go

    best = {(row.task, row.model, row.method, int(row.trial)) for row in board.itertuples() if pd.notna(row.trial)}
    figures = []
    for (task, model), part in board.groupby(["task", "model"], sort=False):
        fig = go.Figure()
        for r in records:
            if (r.phase == "search" and (r.task, r.model, r.method, r.trial_number) in best
                    and r.task == task and r.model == model):
                losses = [(h["step"], h["loss"]) for h in r.history if "loss" in h]
                if losses:
                    fig.add_trace(go.Scatter(x=[s for s, _ in losses], y=[v for _, v in losses],
                                             mode="lines+markers", name=r.method))
        if fig.data:
            fig.update_layout(title=f"{task} · {model}: training loss of each method's best trial",
                              xaxis_title="step", yaxis_title="loss", height=360)
            figures.append({"id": f"curve-{len(figures)}", "figure": figure_json(fig)})
    return figures


def validation_figures(records: list[TrialRecord]) -> list[dict]:
    """Each search trial's validation score by step, per cell: under a multi-fidelity strategy the
    points are the rungs, the score is the one the rungs judged by (search.rung_metric: a validation
    loss, or the objective), and a pruned trial's line ends where it was stopped (marked x)."""
    import plotly.graph_objects as go

    figures = []
    for trials in search_trials_by_cell(records).values():
        metric, _ = judged_by(trials[0])
        key = f"validation_{metric}"
        fig = go.Figure()
        for r in sorted(trials, key=lambda t: t.trial_number):
            points = [(h["step"], h[key]) for h in r.history if key in h]
            if len(points) < 2 and r.status != "pruned":
                continue
            fig.add_trace(go.Scatter(x=[s for s, _ in points], y=[v for _, v in points], mode="lines+markers",
                                     name=f"trial {r.trial_number} ({r.status})",
                                     marker={"symbol": ["circle"] * (len(points) - 1)
                                             + ["x" if r.status == "pruned" else "circle"], "size": 8}))
        if fig.data:
            first = trials[0]
            fig.update_layout(title=f"{first.task} · {first.model} · {first.method}: validation {metric} by step",
                              xaxis_title="step", yaxis_title=f"validation {metric}", height=340)
            figures.append({"id": f"validation-{len(figures)}", "figure": figure_json(fig)})
    return figures


def estimate_figures(records: list[TrialRecord]) -> list[dict]:
    """Predicted against measured training memory, one colour per method, with the y = x line."""
    import plotly.graph_objects as go

    from harness.report.estimates import estimate_points

    points = estimate_points(records)
    if not points:
        return []
    fig = go.Figure()
    for method in dict.fromkeys(p[0] for p in points):
        mine = [p for p in points if p[0] == method]
        fig.add_trace(go.Scatter(x=[p[1] for p in mine], y=[p[2] for p in mine], mode="markers", name=method,
                                 text=[p[3] for p in mine]))
    top = max(max(p[1], p[2]) for p in points) * 1.05
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="predicted = measured",
                             line={"dash": "dot", "color": "grey"}))
    fig.update_layout(title="training memory: predicted before the trial vs measured (MiB)",
                      xaxis_title="predicted MiB", yaxis_title="measured MiB", height=380)
    return [{"id": "estimate-0", "figure": figure_json(fig)}]
