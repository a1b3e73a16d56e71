"""`harness trend HISTORY`: each metric of each cell across nights (one results folder per night,
sorted by name, e.g. results/nightly/2026-11-26, results/nightly/2026-11-27), with the nights on
which `harness compare` against the night before would have flagged it (regressed or missing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.records.store import open_store
from harness.report.compare import METRICS, cell_samples, compare, results_folder, tolerances
from harness.report.pages import figure_json, safe_json, write_page


@dataclass
class Trend:
    # metric -> cell -> [(night, mean over that night's seeds)]
    points: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    # (metric, cell) -> nights that compare against the previous night flags
    flagged: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def trend_points(history: Path) -> Trend:
    nights = []
    for night in sorted(p for p in history.iterdir() if p.is_dir()):
        try:
            folder = results_folder(night)
        except UserError:
            continue
        nights.append((night.name, folder, open_store(folder).load_all()))
    if not nights:
        raise UserError(f"{history}: no nightly results folders with records inside")
    trend = Trend(points={m.name: {} for m in METRICS})
    for name, _, records in nights:
        for cell, runs in cell_samples(records).items():
            for metric in METRICS:
                values = [metric.values(r) for r in runs]
                trend.points[metric.name].setdefault(cell, []).append((name, sum(values) / len(values)))
    for (_, base_dir, base), (name, _, cand) in zip(nights, nights[1:]):
        for v in compare(base, cand, tolerances(base_dir, {})):
            if v.is_failure:
                for metric in ([m.name for m in METRICS] if v.metric == "all" else [v.metric]):
                    trend.flagged.setdefault((metric, v.cell), []).append(name)
    return trend


def write_trend(history: str, out: str | None) -> Path:
    import plotly.graph_objects as go

    history_dir = Path(history)
    if not history_dir.is_dir():
        raise UserError(f"{history_dir}: history folder not found")
    trend = trend_points(history_dir)
    figures = []
    for metric, cells in trend.points.items():
        fig = go.Figure()
        for cell, series in cells.items():
            fig.add_trace(go.Scatter(x=[n for n, _ in series], y=[v for _, v in series], mode="lines+markers",
                                     name=cell))
            flagged = set(trend.flagged.get((metric, cell), []))
            marks = [(n, v) for n, v in series if n in flagged]
            if marks:
                fig.add_trace(go.Scatter(x=[n for n, _ in marks], y=[v for _, v in marks], mode="markers",
                                         marker={"symbol": "x", "size": 14, "color": "#b00020"},
                                         name=f"{cell}: compare flags it"))
        fig.update_layout(title=f"{metric} across nights (x: compare against the night before flags it)",
                          height=360, xaxis_title="night", yaxis_title=metric)
        figures.append({"id": f"trend-{metric}", "figure": figure_json(fig)})
    out_dir = Path(out) if out else Path("reports") / f"{history_dir.name}-trend"
    flags = sorted((n, m, c) for (m, c), nights in trend.flagged.items() for n in nights)
    return write_page("trend.html.j2", out_dir, with_plotly=True, history=str(history_dir), figures=figures,
                      figures_json=safe_json(figures), flags=flags)
