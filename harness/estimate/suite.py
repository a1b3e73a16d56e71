"""`harness estimate`: every training cell of a suite, from each model's config alone; and the
calibration of the estimate's factors from measured records."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.estimate import MAX_PROCESSES, CellEstimate, Target, estimate


def model_config(spec, base_dir: Path):
    """The model's config.json: nothing else is read (a folder holding only config.json is enough)."""
    from transformers import AutoConfig

    from harness.models import resolve

    return AutoConfig.from_pretrained(resolve(spec, base_dir), revision=spec.revision)


def estimate_suite(loaded, target: Target, calibration: dict | None = None) -> list[CellEstimate]:
    """One estimate per training cell, at the method's default parameters and the suite's fixed ones."""
    from harness.plan import head_for, plan, trial_training
    from harness.tasks import family_for

    configs: dict[Any, Any] = {}
    out = []
    for cell in plan(loaded.suite):
        if not cell.method.trains:
            continue
        if cell.model not in configs:
            configs[cell.model] = model_config(cell.model, loaded.base_dir)
        config = configs[cell.model]
        training = trial_training(loaded.suite, cell.method.split(cell.fixed)[1])
        family = family_for(cell.task)
        head = head_for(family, config)
        common = dict(config=config, head=head, pairs=family.pairs, holds_reference=family.holds_reference,
                      num_labels=len(cell.task.labels or ()) or 2, seq_len=cell.model.max_length,
                      dtype=cell.model.dtype, target=target, calibration=calibration,
                      gradient_checkpointing=cell.acceleration.gradient_checkpointing,
                      strategy=cell.distributed.strategy)
        processes = cell.processes
        found = estimate(cell.id, cell.method, cell.fixed, training.model_copy(update={"ranks": processes})
                         if isinstance(processes, int) else training, processes=processes
                         if isinstance(processes, int) else 1, **common)
        if processes == "auto" and found.min_processes and found.min_processes > 1:  # per rank at the fewest that fit
            fewest = found.min_processes
            found = estimate(cell.id, cell.method, cell.fixed, training.model_copy(update={"ranks": fewest}),
                             processes=fewest, **{**common, "strategy": "fsdp"})
        setting = cell.fixed.get("adapter_dtype", "float32")
        if "adapter_dtype" in cell.method.params.model_fields and cell.model.dtype != "float32":
            other = "compute" if setting == "float32" else "float32"  # the estimate gives both
            flipped = estimate(cell.id, cell.method, {**cell.fixed, "adapter_dtype": other},
                               training.model_copy(update={"ranks": found.processes}), processes=found.processes,
                               **{**common, "strategy": found.strategy})
            found.other_adapter_dtype = {other: flipped.predicted_peak_bytes}
        out.append(found)
    return out


def print_estimates(estimates: list[CellEstimate], target: Target) -> None:
    import sys

    from rich import box
    from rich.console import Console
    from rich.table import Table

    scale, unit = (2**30, "GiB") if max((e.predicted_peak_bytes for e in estimates), default=0) > 2**31 else (2**20, "MiB")

    def size(n: float | None) -> str:
        return "-" if n is None else f"{n / scale:,.{2 if unit == 'GiB' else 0}f}"

    limit = f"{size(target.memory_limit_bytes)} {unit}" if target.memory_limit_bytes else "unknown"
    rows = []
    for e in estimates:
        p = e.parts
        optim = p.get("optimizer_states", p.get("optimizer_states_paged", 0))
        other = p.get("cpu_runtime", 0) + p.get("cpu_allocator", 0) + p.get("cuda_context", 0) + \
            p.get("fsdp_gathered", 0) + p.get("ddp_buckets", 0) + p.get("inherited_weights", 0)
        fewest = "-" if e.min_processes is None else f"> {MAX_PROCESSES}" if e.min_processes == 0 else \
            "1" if e.min_processes == 1 else f"x{e.min_processes}"
        rows.append({
            "cell": e.cell_id, "ranks": "1" if e.processes == 1 else f"{e.strategy} x{e.processes}",
            "micro": str(e.micro_batch), "seq": str(e.seq_len), "weights": size(p["weights"] + p.get("reference_model", 0)),
            "quant": size(p["quantization_constants"]), "grads": size(p["gradients"]),
            "optim": size(optim) + (" paged" if "optimizer_states_paged" in p else ""), "activ": size(p["activations"]),
            "other": size(other), "peak": size(e.predicted_peak_bytes), "fits": {True: "yes", False: "NO", None: "?"}[e.fits],
            "max micro": "-" if e.max_micro_batch is None else str(e.max_micro_batch), "fsdp fits at": fewest,
            "tok/s": "-" if e.predicted_tokens_per_s is None else f"{e.predicted_tokens_per_s:,.0f}"})
    # what every row shares goes to the title, so the table keeps to 100 columns: the cells' common
    # task--model-- prefix, one sequence length, and the columns that say nothing (all 0, one rank, no figure)
    parts = [r["cell"].split("--") for r in rows]
    common = 0
    while parts and all(len(c) > common + 1 and c[common] == parts[0][common] for c in parts):
        common += 1
    prefix = "--".join(parts[0][:common]) + "--" if common else ""
    for r in rows:
        r["cell"] = r["cell"][len(prefix):]
    seqs = {r["seq"] for r in rows}
    nothing = {"ranks": ("1",), "quant": (size(0),), "grads": (size(0),), "max micro": ("-",),
               "fsdp fits at": ("-", "1"), "tok/s": ("-",)}  # a column whose every row is one of these
    columns = [c for c in rows[0] if not (c == "seq" and len(seqs) == 1)
               and not all(r[c] in nothing.get(c, ()) for r in rows)] if rows else []
    table = Table(title=f"predicted peak training memory ({unit}) on {target.gpu_name or target.device}, "
                        f"fitting in {limit}" + (f", sequences of {next(iter(seqs))} tokens" if len(seqs) == 1 else "")
                        + (f"; cells: {prefix}<cell>" if prefix else ""),
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in columns:
        table.add_column(col, justify="left" if col == "cell" else "right",  # numbers never cut; words wrap
                         no_wrap=col not in ("cell", "ranks", "optim", "max micro", "fsdp fits at"))
    for r in rows:
        table.add_row(*(r[c] for c in columns))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    flipped = [e for e in estimates if e.other_adapter_dtype]
    if flipped:
        print("adapters in the model's dtype (adapter_dtype: compute) against float32 (peft's default):")
        for e in flipped:
            (other, peak), = e.other_adapter_dtype.items()
            mine = "float32" if other == "compute" else "compute"
            both = {mine: e.predicted_peak_bytes, other: peak}
            print(f"  {e.cell_id}: compute {size(both['compute'])} {unit}, float32 {size(both['float32'])} {unit}")
    if estimates:
        print("other: the CUDA context (counted for fitting only) or, on a CPU, the runtime and allocator's resident "
              "memory beyond the tensors; over several ranks, FSDP's gathered layers or DDP's gradient buckets. "
              "ranks: a column per rank of the method's runner.distributed; fsdp fits at: the fewest FSDP ranks "
              "it fits on")
        print("assumptions: " + "; ".join(dict.fromkeys(a for e in estimates for a in e.assumptions[1:])))


# --- calibration from measured records ---------------------------------------------------------

def calibrate(records) -> dict:
    """Per method, from complete trials that carry a prediction and a measured train peak: the
    activations' factor (and, where the records hold three or more distinct activation sizes, a
    constant offset beside it, fitted by least squares: what a device adds whatever the size) that
    makes the predictions meet the measurements, the measured MFU (median), and the prediction's
    median error before and after."""
    from harness.records.schema import measured_train_bytes

    by_method: dict[str, list] = {}
    for r in records:
        est, measured = r.estimate or {}, measured_train_bytes(r)
        if r.status == "complete" and est.get("predicted_peak_bytes") and measured and est.get("parts"):
            by_method.setdefault(r.method_name, []).append(r)
    factors, offsets, mfus, rows = {}, {}, {}, []
    for method, recs in sorted(by_method.items()):
        points = []  # (predicted activations, measured - predicted everything else)
        for r in recs:
            activations = r.estimate["parts"].get("activations") or 0
            points.append((activations, measured_train_bytes(r) - (r.estimate["predicted_peak_bytes"] - activations)))
        factor, offset = _fit(points)
        errors = {"before": [], "after": []}
        for r, (activations, _) in zip(recs, points):
            predicted, measured = r.estimate["predicted_peak_bytes"], measured_train_bytes(r)
            errors["before"].append(abs(predicted / measured - 1))
            errors["after"].append(abs((predicted + (factor - 1) * activations + offset) / measured - 1))
        measured_mfu = [r.throughput.mfu for r in recs if r.throughput.mfu]
        factors[method], offsets[method] = round(factor, 4), int(offset)
        if measured_mfu:
            mfus[method] = round(statistics.median(measured_mfu), 4)
        rows.append({"method": method, "records": len(recs), "activation_factor": round(factor, 4),
                     "offset_bytes": int(offset), "moved_by": round(factor - 1, 4),
                     "median_abs_error_before": round(statistics.median(errors["before"]), 4),
                     "median_abs_error_after": round(statistics.median(errors["after"]), 4),
                     "mfu": mfus.get(method)})
    return {"activation_factor": factors, "offset_bytes": offsets, "mfu": mfus, "methods": rows}


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(factor, offset) with measured_rest = offset + factor x activations: least squares over three
    or more distinct activation sizes spanning at least 1.5x (closer sizes, such as one length with
    different adapter ranks, leave the slope ill-posed), else the median ratio with no offset."""
    sizes = {round(a) for a, _ in points if a > 0}
    if len(sizes) >= 3 and max(sizes) >= 1.5 * min(sizes):
        n = len(points)
        mean_a, mean_m = sum(a for a, _ in points) / n, sum(m for _, m in points) / n
        var = sum((a - mean_a) ** 2 for a, _ in points)
        factor = sum((a - mean_a) * (m - mean_m) for a, m in points) / var
        if factor > 0:
            return factor, mean_m - factor * mean_a
    ratios = [m / a for a, m in points if a > 0]
    return (max(statistics.median(ratios), 0.0) if ratios else 1.0), 0.0


def load_calibration(results_dir: str) -> dict:
    from harness.records.store import open_store

    folder = Path(results_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: results folder not found")
    records = open_store(folder).load_all()
    calibration = calibrate(records)
    if not calibration["methods"]:
        raise UserError(f"{folder}: no complete trial record carries an estimate and a measured train peak to "
                        f"calibrate from (records written before `harness estimate` existed carry none)")
    (folder / "estimate-calibration.json").write_text(json.dumps(calibration, indent=1), encoding="utf-8")
    return calibration


def print_calibration(calibration: dict) -> None:
    print("calibrated activation factors (measured / predicted activations, median per method):")
    for row in calibration["methods"]:
        mfu = f", measured MFU {row['mfu']:.1%}" if row.get("mfu") else ""
        offset = f" + {row['offset_bytes'] / 2**20:+.0f} MiB" if row.get("offset_bytes") else ""
        print(f"  {row['method']}: x{row['activation_factor']:.3f}{offset} (moved {row['moved_by']:+.1%}; "
              f"{row['records']} records; median |error| {row['median_abs_error_before']:.1%} -> "
              f"{row['median_abs_error_after']:.1%}{mfu})")
