"""`harness trend HISTORY`: each metric of each cell across nights (one results folder per night,
sorted by name, e.g. results/nightly/2026-11-26, results/nightly/2026-11-27)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.errors import UserError
from harness.records.store import RecordStore
from harness.report.compare import METRICS, cell_samples, results_folder


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
    import plotly
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
        figures.append({"id": f"trend-{metric}", "figure": json.loads(fig.to_json())})
    out_dir = Path(out) if out else Path("reports") / f"{history_dir.name}-trend"
    out_dir.mkdir(parents=True, exist_ok=True)
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    from harness.report.html import _safe_json

    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["j2"]))
    page = env.get_template("trend.html.j2").render(history=str(history_dir), figures=figures,
                                                    figures_json=Markup(_safe_json(figures)))
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", out_dir / "plotly.min.js")
    return out_dir / "index.html"
