"""The self-contained HTML report: reports/<suite>/index.html plus plotly.min.js beside it (loaded
once, no CDN), and the leaderboard exports. Every user string goes through Jinja's autoescape."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.records.schema import TrialRecord
from harness.report.charts import (curve_figures, estimate_figures, pareto_figures, retention_figures, search_figures,
                                   validation_figures)
from harness.report.acceleration import acceleration_rows, acceleration_table
from harness.report.preference import preference_rows
from harness.report.serving import serving_figures, serving_tables
from harness.report.compute import compute_lines, compute_table, rung_lines
from harness.report.decide import Terms, answers
from harness.report.target import fits_somewhere
from harness.report.estimates import estimate_table
from harness.report.leaderboard import method_text, metric_columns
from harness.report.pages import safe_json, write_page
from harness.report.terminal import (MEMORY_NOTE, caption, confidence_text, data_lines, forgetting_text, human_count,
                                     rank_text, retention_short, tie_text, verdict_text)

COLUMNS = [  # (board column, header, format)
    ("rank", "#", str),
    ("method", "method", str),
    ("family", "family", str),
    ("ranks", "ranks", str),
    ("trainable_params", "trainable", human_count),
    ("trainable_pct", "trainable %", lambda v: f"{v:.3f}"),
    ("peak_mib", "train MiB", lambda v: f"{v:.0f}"),
    ("eval_mib", "eval MiB", lambda v: f"{v:.0f}"),
    ("absolute_peak_mib", "absolute peak MiB", lambda v: f"{v:.0f}"),
    ("train_s", "train s", lambda v: f"{v:.1f}"),
    ("tokens_per_s", "tokens/s", lambda v: f"{v:.0f}"),
    ("busy", "host busy", lambda v: f"{v:.0%}"),
    ("mfu", "MFU", lambda v: f"{100 * v:.2f}%"),
    ("train_joules", "energy J", lambda v: f"{v:.0f}"),
    ("artifact_mib", "artifact MiB", lambda v: f"{v:.2f}"),
    ("forgetting_text", "forgetting, nats/token [95% CI]", str),
    ("drift", "KL drift, nats/token", lambda v: f"{v:.4f}"),
    ("repr_drift", "repr. drift (1-CKA)", lambda v: f"{v:.4f}"),
    ("retention_s", "retention s", lambda v: f"{v:.1f}"),
    ("serve_ms", "serve ms (token or example)", lambda v: f"{v:.2f}"),
    ("serve_overhead", "serve overhead", lambda v: f"{v:+.1f}%"),
    ("serve_mib", "serve MiB", lambda v: f"{v:.0f}"),
    ("trials_ok", "trials ok", str),
]


def _cell(value, fmt, text: bool = False) -> dict:
    missing = value is None or (isinstance(value, float) and pd.isna(value))
    return {"show": "—" if missing else fmt(value), "sort": "" if missing else value, "text": text}


def _target_rows(terms: Terms | None) -> list[dict]:
    """The table under the answer where the suite names a decision.target: each method there."""
    rows = []
    for t in (terms.target if terms else ()):
        fits = fits_somewhere(t)
        rows.append({"task": t["task"], "method": t["method"], "gib": f"{t['predicted_bytes'] / 2**30:.1f}",
                     "micro": t["micro_batch"], "max_micro": "-" if t.get("max_micro_batch") is None else t["max_micro_batch"],
                     "fits": {True: "yes", False: "no", None: "?"}[fits],
                     "tokens": f"{t['tokens_per_s']:,.0f}" if t.get("tokens_per_s") else "-",
                     "hours": f"{t['train_hours']:.2f}" if t.get("train_hours") else "-",
                     "where": f"{t['model']} on {t['gpu'] or 'the given memory'}, {t['seq_len']} tokens, {t['dtype']}",
                     "calibrated": "calibrated on this run" if t.get("calibrated") else "uncalibrated"})
    return rows


def _percent(level: float) -> str:
    return f"{level:.1%}".replace(".0%", "%")  # 90%, 96.7%


def _boards(board: pd.DataFrame) -> list[dict]:
    boards = []
    for (task, model), part in board.groupby(["task", "model"], sort=False):
        metrics = [m for m in metric_columns(board) if part[m].notna().any()]
        columns = [{"label": label, "text": key in ("method", "family")} for key, label, _ in COLUMNS[:2]]
        columns += [{"label": m.removeprefix("metric:"), "text": False} for m in metrics]
        seeded = bool((part["seeds"] > 0).any())
        retained = bool(part["forgets"].notna().any())
        if seeded:
            columns += [{"label": "95% CI (seeds)", "text": False},
                        {"label": f"Δ vs best, paired by seed [{_percent(float(part['level'].max()))} CI], "
                                  "verdict", "text": True}]
        columns += [{"label": label, "text": key in ("method", "family")} for key, label, _ in COLUMNS[2:]]
        rows = []
        for _, row in part.iterrows():
            values = dict(row)
            values["trials_ok"] = f"{int(row['complete'])}/{int(row['trials'])}"
            values["forgetting_text"] = forgetting_text(row) if pd.notna(row.get("forgetting")) else None
            cells = [{"show": rank_text(row), "sort": values.get("rank") if pd.notna(values.get("rank")) else 99,
                      "text": False}, _cell(values.get("method"), str, True)]
            cells += [_cell(values.get(m), lambda v: f"{v:.4f}") for m in metrics]
            if seeded:
                cells += [{"show": confidence_text(row), "sort": values.get("ci_low"), "text": False},
                          {"show": tie_text(row), "sort": values.get("diff_vs_best", ""), "text": True}]
            cells += [_cell(values.get(k), f, k in ("method", "family")) for k, _, f in COLUMNS[2:]]
            verdict = values.get("verdict") if values.get("verdict") in ("equivalent", "undecided", "worse") else ""
            rows.append({"best": not row["reference"] and values.get("rank") == 1, "verdict": verdict,
                         "reference": bool(row["reference"]), "cells": cells,
                         "compact": _compact_cells(row, values, part, retained)})
        objective = part["objective_metric"].dropna().iloc[0] if part["objective_metric"].notna().any() else "score"
        compact = [{"label": label, "text": text} for label, text in (
            ("#", False), ("method", True), (objective, False), ("95% CI (seeds)", False),
            ("vs best: verdict, Δ", True), ("trainable %", False), ("train MiB", False), ("tokens/s", False),
            ("train s", False))] + ([{"label": "forgets" if part["forgetting"].notna().any() else "repr. drift",
                                       "text": False}] if retained else [])
        boards.append({"task": task, "model": model, "columns": columns, "rows": rows, "caption": caption(part),
                       "compact_columns": compact})
    return boards


def _compact_cells(row, values: dict, part: pd.DataFrame, retained: bool = False) -> list[dict]:
    """The page's first table, which fits 1280 pixels: rank, method, the objective with its seed
    interval, the verdict against the best, trainable share, train memory, speed and time (every
    column: the table under it, and the exports)."""
    objective = part["objective_metric"].dropna().iloc[0] if part["objective_metric"].notna().any() else ""
    fmt = dict((key, f) for key, _, f in COLUMNS)
    return [{"show": rank_text(row), "sort": values.get("rank") if pd.notna(values.get("rank")) else 99, "text": False},
            _cell(method_text(values), str, True),
            _cell(values.get(f"metric:{objective}"), lambda v: f"{v:.4f}"),
            {"show": confidence_text(row), "sort": values.get("ci_low"), "text": False},
            {"show": verdict_text(row), "sort": values.get("diff_vs_best", ""), "text": True},
            *[_cell(values.get(k), fmt[k]) for k in ("trainable_pct", "peak_mib", "tokens_per_s", "train_s")]] + \
        ([{"show": retention_short(row), "text": False,
           "sort": values.get("forgets")}]
         if retained else [])


def _compute_rows(table: pd.DataFrame) -> list[dict]:
    if table.empty or not (table["pruned"] > 0).any() and (table["strategy"] == "none").all():
        return []
    return [{"cell": row.cell_id, "strategy": row.strategy, "trials": row.trials, "runs": row.runs, "pruned": row.pruned,
             "steps": f"{row.steps:,} / {row.full_steps:,}", "share": f"{row.step_share:.0%}",
             "train_s": f"{row.train_s:.1f}", "validation_s": f"{row.validation_s:.1f}",
             "full_s": f"{row.full_train_s_est:.1f}"} for row in table.itertuples()]


def _estimate_rows(table: pd.DataFrame) -> list[dict]:
    def mib(v):
        return "—" if v is None or pd.isna(v) else f"{v:.0f}"

    def ratio(v):
        return "—" if v is None or pd.isna(v) else f"{v:.2f}"

    return [{"method": row.method, "records": row.records, "skipped": row.skipped, "predicted": mib(row.predicted_mib),
             "measured": mib(row.measured_mib), "ratio": ratio(row.ratio), "worst": ratio(row.worst)}
            for row in table.itertuples()]


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


def write_report(records: list[TrialRecord], board: pd.DataFrame, out_dir: Path, storage_url: str | None,
                 suite_text: str, study_prefix: str = "", compute: pd.DataFrame | None = None,
                 terms: Terms | None = None) -> Path:
    """reports/<suite>/index.html from the records and their leaderboard (computed once, by publish)."""
    figures = {"pareto": pareto_figures(board),
               "search": search_figures(storage_url, study_prefix) if storage_url else [],
               "curves": curve_figures(records, board), "validation": validation_figures(records),
               "estimates": estimate_figures(records), "retention": retention_figures(records),
               "serving": serving_figures(board)}
    compute = compute_table(records) if compute is None else compute
    return write_page(
        "report.html.j2", out_dir, with_plotly=True,
        suite=records[0].suite, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_records=len(records), objective=records[0].objective_metric, boards=_boards(board),
        memory_source=MEMORY_NOTE + " " + records[0].memory.source,
        tolerance=f"{float(board['tolerance'].iloc[0]):g}" if "tolerance" in board and len(board) else "",
        answers=[{"task": task, "model": model, "text": text}
                 for (task, model), text in answers(board, terms).items()],
        target=_target_rows(terms), pareto=figures["pareto"], retention=figures["retention"], search=figures["search"],
        serving=serving_tables(records), serving_charts=figures["serving"],
        curves=figures["curves"], validation=figures["validation"],
        compute_summary=compute_lines(compute) + rung_lines(records),
        compute=_compute_rows(compute), estimates=_estimate_rows(estimate_table(records)),
        estimate_chart=figures["estimates"], acceleration=acceleration_rows(acceleration_table(records)),
        preference=preference_rows(records),
        notes=data_lines(records) + [f"library warning (could affect speed or memory figures): {n}"
                                     for n in dict.fromkeys(n for r in records for n in r.environment.get("notices", []))],
        failures=[{"cell": r.cell_id, "trial": r.trial_number, "status": r.status, "reason": r.reason or ""}
                  for r in records if r.status != "complete"],
        provenance=_provenance(records, suite_text), suite_text=suite_text,
        figures_json=safe_json([f for group in figures.values() for f in group]),
    )
