"""The report's Serving section: per task x model, every profiled variant of each method's chosen
configuration (records.schema.Serving) beside the engines that take its artifact
(harness/data/serving_engines.yaml), and quality against serving latency."""

from __future__ import annotations

import pandas as pd

from harness.records.schema import TrialRecord

MiB = 2**20


def _profiled(records: list[TrialRecord]) -> list[TrialRecord]:
    """The profiled run of each method's chosen configuration: a confirmation run where there is one,
    else the validation-best search trial."""
    from harness.records.select import chosen_ids

    chosen = chosen_ids(records)
    runs = [r for r in records if id(r) in chosen and r.status == "complete" and r.serving is not None]
    confirmed = {(r.task, r.model, r.method) for r in runs if r.phase == "confirm"}
    return [r for r in runs if r.phase == "confirm" or (r.task, r.model, r.method) not in confirmed]


def _number(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _check_text(check: dict | None) -> str:
    if not check:
        return "—"
    return (f"max |Δlogit| {check['max_abs_diff']:.2g}; {check['predictions_changed']}/{check['predictions']} "
            f"predictions changed")


def serving_tables(records: list[TrialRecord]) -> list[dict]:
    """One table per task x model: a row per method and variant."""
    from harness.report.engines import artifact_key, engine_file, support

    engines = engine_file().engines
    tables: dict[tuple[str, str], dict] = {}
    for r in _profiled(records):
        s = r.serving
        table = tables.setdefault((r.task, r.model), {"task": r.task, "model": r.model, "rows": [], "mode": s.mode,
                                                      "notes": set()})
        if s.error:
            table["rows"].append({"method": r.method, "variant": "—", "error": s.error, "cells": []})
            continue
        found = support(r.method_name, r.params) or {}
        engine_cells = [{"name": engines[k].name, "serves": e.serves, "title": f"{e.limits or e.note or ''} "
                         f"({engine_file().url(e)})".strip()} for k, e in found.items()]
        table["notes"].add(f"prompt {s.prompt_tokens} tokens, {s.new_tokens} new tokens, batch {s.batch}, "
                           f"on {s.device}" if s.mode == "generate" else f"inputs of {s.prompt_tokens} tokens, "
                                                                          f"batch {s.batch}, on {s.device}")
        for i, v in enumerate(s.variants):
            first = i == 0
            if s.mode == "generate":
                speed = [_number(v.prefill_tokens_per_s, "{:,.0f}"), _number(v.decode_ms_per_token, "{:.2f}"),
                         _number(v.decode_tokens_per_s_batch, "{:,.0f}")]
            else:
                speed = [_number(v.examples_per_s, "{:,.0f}"), _number(v.examples_per_s_batch, "{:,.0f}")]
            table["rows"].append({
                "method": r.method if first else "", "variant": v.name + (" (ships)" if v.name == s.ships else ""),
                "ships": v.name == s.ships, "description": v.description, "speed": speed,
                "overhead": _number(v.overhead_pct, "{:+.1f}%") + (
                    f" ({v.overhead_low_pct:+.0f}..{v.overhead_high_pct:+.0f})"
                    if v.overhead_low_pct is not None and v.name != "base" and v.rounds > 1 else ""),
                "mib": f"{v.peak_bytes / MiB:,.0f}",
                "rounds": v.rounds, "spread": f"{v.spread:.0%}",
                "check": _check_text(s.merge_check) if first else "",
                "changed": bool(first and s.merge_check and s.merge_check.get("predictions_changed")),
                "artifact": (f"{s.artifact_bytes / MiB:,.2f} MiB" if s.artifact_bytes is not None else "—") if first else "",
                "extra": (f"+{s.extra_tokens} tokens/request" if s.extra_tokens else
                          f"+{s.cache_entries_per_layer} KV entries/layer" if s.cache_entries_per_layer else
                          "merges" if s.mergeable else "no merge") if first else "",
                "cost": _number(s.cost_per_million_tokens, "${:,.3f}") if first else "",
                "engines": engine_cells if first else [], "key": artifact_key(r.method_name, r.params)})
    out = []
    for table in tables.values():
        table["notes"] = sorted(table["notes"])
        out.append(table)
    return out


def serving_figures(board: pd.DataFrame) -> list[dict]:
    """Quality against serving latency per task x model: one point per method (its seed mean and 95%
    interval), x the decode ms/token at batch 1 of the variant it ships (other heads: ms per example)."""
    import plotly.graph_objects as go

    from harness.report.pages import figure_json

    figures = []
    if board.empty or "serve_ms" not in board:
        return figures
    for (task, model), part in board.groupby(["task", "model"], sort=False):
        part = part[part["serve_ms"].notna() & part["objective"].notna()]
        if part.empty:
            continue
        fig = go.Figure()
        for row in part.itertuples():
            low, high = getattr(row, "ci_low", None), getattr(row, "ci_high", None)
            error = None
            if low is not None and high is not None and not pd.isna(low) and not pd.isna(high):
                error = {"type": "data", "symmetric": False, "array": [high - row.objective],
                         "arrayminus": [row.objective - low], "visible": True}
            fig.add_trace(go.Scatter(x=[row.serve_ms], y=[row.objective], mode="markers+text", name=str(row.method),
                                     text=[f"{row.method} ({row.serve_variant})"], textposition="top center",
                                     error_y=error))
        generate = (part["serve_mode"] == "generate").any()
        metric = part["objective_metric"].iloc[0]
        fig.update_layout(title=f"{task} · {model}: {metric} vs serving latency",
                          xaxis_title="decode ms/token at batch 1, as shipped" if generate else "ms per example at batch 1",
                          yaxis_title=f"test {metric}", height=380, showlegend=False,
                          margin={"t": 50, "l": 60, "r": 20, "b": 50})
        figures.append({"id": f"serving-{len(figures)}", "figure": figure_json(fig)})
    return figures
