"""`harness trend HISTORY`: each metric of each cell across nights (one results folder per night,
sorted by name, e.g. results/nightly/2026-11-26, results/nightly/2026-11-27)."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.records.store import RecordStore
from harness.report.compare import METRICS, cell_samples, results_folder
from harness.report.pages import figure_json, safe_json, write_page


def trend_points(history: Path) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """metric -> cell -> [(night, mean over that night's seeds)]."""
    nights = sorted(p for p in history.iterdir() if p.is_dir())
    points: dict[str, dict[str, list[tuple[str, float]]]] = {name: {} for name, *_ in METRICS}
    found = 0
    for night in nights:
        try:
            folder = results_folder(night)
        except UserError:
            continue
        found += 1
        for cell, records in cell_samples(RecordStore(folder).load_all()).items():
            for name, get, *_ in METRICS:
                values = [get(r) for r in records]
                points[name].setdefault(cell, []).append((night.name, sum(values) / len(values)))
    if not found:
        raise UserError(f"{history}: no nightly results folders with records inside")
    return points


def write_trend(history: str, out: str | None) -> Path:
    import plotly.graph_objects as go

    history_dir = Path(history)
    if not history_dir.is_dir():
        raise UserError(f"{history_dir}: history folder not found")
    points = trend_points(history_dir)
    figures = []
    for metric, cells in points.items():
        fig = go.Figure()
        for cell, series in cells.items():
            fig.add_trace(go.Scatter(x=[n for n, _ in series], y=[v for _, v in series], mode="lines+markers",
                                     name=cell))
        fig.update_layout(title=f"{metric} across nights", height=360, xaxis_title="night", yaxis_title=metric)
        figures.append({"id": f"trend-{metric}", "figure": figure_json(fig)})
    out_dir = Path(out) if out else Path("reports") / f"{history_dir.name}-trend"
    return write_page("trend.html.j2", out_dir, with_plotly=True, history=str(history_dir), figures=figures,
                      figures_json=safe_json(figures))
