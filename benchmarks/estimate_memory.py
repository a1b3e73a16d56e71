"""Predicted against measured training memory on this CPU (issue 16's first must-show).

For each model (tiny-bert built in code, MiniLM-L6, SmolLM2-135M), method (full, LoRA, QLoRA, IA3,
prompt tuning) and sequence length (two), one trial runs through `harness run` on texts long
enough that every batch is max_length tokens (builtin sentiment-long), and its record holds the
prediction made before it ran beside the measurement: the training phase's peak RSS above the
process before any model weights (weights + gradients + optimizer states + activations + what the
CPU runtime itself adds while training: kernels' code pages, allocator arenas). Prints one row per
trial: predicted, measured, the difference and whether it is within the aim (20% or 30 MiB,
whichever is larger).

    python benchmarks/estimate_memory.py [--models tiny-bert,minilm-l6,smollm2-135m] [--lengths 64,256]"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = """\
name: estimate-{model}
models: [{models}]
tasks: [{{name: long, kind: classification, data: {{builtin: sentiment-long, train_size: 64, validation_size: 16, test_size: 16}}}}]
methods: [{{name: full}}, {{name: lora}}, {{name: qlora}}, {{name: ia3}}, {{name: prompt_tuning}}]
search: {{trials_per_cell: 1, sampler: none}}
references: false
training: {{max_steps: 4, batch_size: {batch}, eval_batch_size: 8}}
"""
MIB = 2**20


def run(model: str, lengths: list[int], batch: int, root: Path) -> list[dict]:
    models = ", ".join(f'{{source: "builtin:{model}", name: "{model}-{n}", max_length: {n}}}' for n in lengths)
    suite = root / f"{model}.yaml"
    suite.write_text(SUITE.format(model=model, models=models, batch=batch))
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--quiet", "--results", str(root / "results"),
                    "--reports", str(root / "reports")], check=False, stdout=subprocess.DEVNULL)
    from harness.records.store import FileRecordStore

    rows = []
    for r in FileRecordStore(root / "results" / f"estimate-{model}").load_all():
        est = r.estimate or {}
        rows.append({"model": r.model, "method": r.method, "status": r.status, "record": r,
                     "length": int(r.model.rsplit("-", 1)[1]),
                     "predicted": est.get("predicted_peak_bytes"), "parts": est.get("parts", {}),
                     "measured": r.memory.train_bytes, "error": est.get("error"), "reason": r.reason})
    return rows


def held_out(rows: list[dict], lengths: list[int]) -> None:
    """`harness estimate --calibrate`'s factors fitted on the records of one length, applied to the
    other length's predictions: how far calibration carries to cells it has not seen."""
    from harness.estimate.suite import calibrate

    print("\n| calibrated on | predicted at | model | method | factor, offset | predicted MiB | measured MiB | difference | within aim |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    inside = total = 0
    for fit, use in ((lengths[0], lengths[1]), (lengths[1], lengths[0])):
        fitted = calibrate([r["record"] for r in rows if r["length"] == fit])
        factors, offsets = fitted["activation_factor"], fitted["offset_bytes"]
        for r in rows:
            if r["length"] != use or r["status"] != "complete" or not r["predicted"] or r["method"] not in factors:
                continue
            factor = factors[r["method"]]
            p, m = r["predicted"] + (factor - 1) * r["parts"]["activations"] + offsets[r["method"]], r["measured"]
            ok = abs(p - m) <= max(0.2 * m, 30 * MIB)
            inside, total = inside + ok, total + 1
            print(f"| {fit} | {use} | {r['model']} | {r['method']} | x{factor:.2f} {offsets[r['method']] / MIB:+.0f} MiB | "
                  f"{p / MIB:.0f} | {m / MIB:.0f} | "
                  f"{(p - m) / MIB:+.0f} MiB ({(p - m) / m:+.0%}) | {'yes' if ok else 'NO'} |")
    print(f"\ncalibrated on the other length, within 20% or 30 MiB: {inside} of {total}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny-bert,minilm-l6,smollm2-135m")
    ap.add_argument("--lengths", default="64,256")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rows += run(model, lengths, args.batch, Path(tmp))
    print("\n| model @ max_length | method | predicted MiB (weights / grads / optim / activ + CPU runtime + allocator) | measured MiB | "
          "difference | within aim |")
    print("| --- | --- | --- | --- | --- | --- |")
    inside = 0
    for r in rows:
        if r["status"] != "complete" or not r["predicted"] or not r["measured"]:
            print(f"| {r['model']} | {r['method']} | {r['error'] or '-'} | - | {r['status']}: {(r['reason'] or '')[:80]} | - |")
            continue
        p, m, parts = r["predicted"], r["measured"], r["parts"]
        diff = p - m
        ok = abs(diff) <= max(0.2 * m, 30 * MIB)
        inside += ok
        optim = parts.get("optimizer_states", parts.get("optimizer_states_paged", 0))
        print(f"| {r['model']} | {r['method']} | {p / MIB:.0f} ({parts['weights'] / MIB:.0f} / "
              f"{parts['gradients'] / MIB:.0f} / {optim / MIB:.0f} / {parts['activations'] / MIB:.0f}"
              f" + CPU runtime {parts.get('cpu_runtime', 0) / MIB:.0f} + allocator {parts.get('cpu_allocator', 0) / MIB:.0f}) | "
              f"{m / MIB:.0f} | {diff / MIB:+.0f} MiB ({diff / m:+.0%}) | {'yes' if ok else 'NO'} |")
    print(f"\nwithin 20% or 30 MiB: {inside} of {len(rows)}")
    held_out(rows, lengths)


if __name__ == "__main__":
    main()
