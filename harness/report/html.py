"""The self-contained HTML report: reports/<suite>/index.html plus plotly.min.js beside it (loaded
once, no CDN), and the leaderboard exports. Every user string goes through Jinja's autoescape."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.records.schema import TrialRecord
from harness.report.charts import curve_figures, pareto_figures, search_figures
from harness.report.files import write_leaderboard_files
from harness.report.leaderboard import leaderboard, metric_columns
from harness.report.terminal import confidence_text, human_count, tie_text

COLUMNS = [  # (board column, header, format)
    ("rank", "#", lambda v: f"{int(v)}"),
    ("method", "method", str),
    ("family", "family", str),
    ("trainable_params", "trainable", human_count),
    ("trainable_pct", "trainable %", lambda v: f"{v:.3f}"),
    ("peak_mib", "peak MiB", lambda v: f"{v:.0f}"),
    ("train_s", "train s", lambda v: f"{v:.1f}"),
    ("tokens_per_s", "tokens/s", lambda v: f"{v:.0f}"),
    ("train_joules", "energy J", lambda v: f"{v:.0f}"),
    ("artifact_mib", "artifact MiB", lambda v: f"{v:.2f}"),
    ("trials_ok", "trials ok", str),
]


def _cell(value, fmt, text: bool = False) -> dict:
    missing = value is None or (isinstance(value, float) and pd.isna(value))
    return {"show": "—" if missing else fmt(value), "sort": "" if missing else value, "text": text}


def _boards(board: pd.DataFrame) -> list[dict]:
    boards = []
    for (task, model), part in board.groupby(["task", "model"], sort=False):
        metrics = [m for m in metric_columns(board) if part[m].notna().any()]
        columns = [{"label": label, "text": key in ("method", "family")} for key, label, _ in COLUMNS[:2]]
        columns += [{"label": m.removeprefix("metric:"), "text": False} for m in metrics]
        seeded = bool((part["seeds"] > 0).any())
        if seeded:
            columns += [{"label": "95% CI (seeds)", "text": False}, {"label": "vs best (paired t-test)", "text": True}]
        columns += [{"label": label, "text": key in ("method", "family")} for key, label, _ in COLUMNS[2:]]
        rows = []
        for _, row in part.iterrows():
            values = dict(row)
            values["trials_ok"] = f"{int(row['complete'])}/{int(row['trials'])}"
            cells = [_cell(values.get(k), f, k in ("method", "family")) for k, _, f in COLUMNS[:2]]
            cells += [_cell(values.get(m), lambda v: f"{v:.4f}") for m in metrics]
            if seeded:
                cells += [{"show": confidence_text(row), "sort": values.get("ci_low"), "text": False},
                          {"show": tie_text(row), "sort": values.get("p_vs_best", ""), "text": True}]
            cells += [_cell(values.get(k), f, k in ("method", "family")) for k, _, f in COLUMNS[2:]]
            rows.append({"best": values.get("rank") == 1 or values.get("tied_with_best") is True, "cells": cells})
        boards.append({"task": task, "model": model, "columns": columns, "rows": rows})
    return boards


def _provenance(records: list[TrialRecord], suite_text: str) -> list[tuple[str, str]]:
    env = records[0].environment
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
    return [
        ("suite", records[0].suite), ("suite hash", records[0].suite_hash),
        ("git commit", f"{env.get('git_commit')}{' (dirty tree)' if env.get('git_dirty') else ''}"),
        ("versions", versions), ("python", str(env.get("python"))), ("platform", str(env.get("platform"))),
        ("cpu", f"{env.get('cpu')} ({env.get('cpu_count')} cores)"),
        ("ram", f"{(env.get('ram_bytes') or 0) / 2**30:.1f} GiB"),
        ("gpus", ", ".join(env.get("gpus") or []) or "none"), ("driver", str(env.get("driver"))),
        ("first trial", min(r.started_at for r in records)), ("last trial", max(r.finished_at for r in records)),
    ]


def _safe_json(data) -> str:
    # Inside <script>, "</" would end the block early; \u2028/\u2029 break older JS parsers.
    return (json.dumps(data).replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def write_report(records: list[TrialRecord], out_dir: Path, storage_url: str | None, suite_text: str) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    import plotly

    out_dir.mkdir(parents=True, exist_ok=True)
    board = leaderboard(records)
    best = [_best_record(records, row) for row in board.itertuples()]
    board["train_joules"] = [r.energy.train_joules if r else None for r in best]
    board["artifact_mib"] = [r.artifact_bytes / 2**20 if r else None for r in best]
    figures = {"pareto": pareto_figures(board), "search": search_figures(storage_url) if storage_url else [],
               "curves": curve_figures(records, board)}
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["j2", "html"]))
    page = env.get_template("report.html.j2").render(
        suite=records[0].suite, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_records=len(records), objective=records[0].objective_metric, boards=_boards(board),
        memory_source=records[0].memory.source, pareto=figures["pareto"], search=figures["search"],
        curves=figures["curves"],
        failures=[{"cell": r.cell_id, "trial": r.trial_number, "status": r.status, "reason": r.reason or ""}
                  for r in records if r.status != "complete"],
        provenance=_provenance(records, suite_text), suite_text=suite_text,
        # Already made safe for a raw <script> block by _safe_json; HTML-escaping it would corrupt the JSON.
        figures_json=Markup(_safe_json([f for group in figures.values() for f in group])),
    )

    (out_dir / "index.html").write_text(page, encoding="utf-8")
    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    target = out_dir / "plotly.min.js"
    if not target.exists() or target.stat().st_size != js.stat().st_size:
        shutil.copyfile(js, target)
    write_leaderboard_files(records, out_dir)
    return out_dir / "index.html"


def _best_record(records: list[TrialRecord], row) -> TrialRecord | None:
    """The search trial a leaderboard row names (confirmation runs share its trial number)."""
    if pd.isna(row.trial):
        return None
    for r in records:
        if r.phase == "search" and (r.task, r.model, r.method, r.trial_number) == (
                row.task, row.model, row.method, int(row.trial)):
            return r
    return None
