"""`harness bench --serving`: the serving profile's timing (harness/measure/serving.py, the Timer every
trial's profile uses) against a bare loop of `model.generate` (other heads: forward calls) on the same
variants of the same model, interleaved, so the profile's figures can be judged against the plainest
way to time them. The method is applied untrained: speed does not depend on the values it learns."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

from harness.spec import Suite


def bare_timing(module, rows: list[list[int]], batch: int, new_tokens: int, pad: int, generate: bool,
                device: str, repeats: int) -> dict:
    """Decoders: decode ms/token at batch 1 from (T(n) - T(1)) / (n - 1) of plain generate calls made back to
    back, and tokens/s at the batch; other heads: examples/s of plain forward calls. Written out in full, on
    purpose: no Timer, no memory reads, torch.no_grad rather than inference_mode."""
    import torch

    one = torch.tensor(rows[:1], device=device)
    many = torch.tensor(rows[:batch], device=device)

    def clocked(fn) -> float:
        """Seconds per call, over as many calls as last 0.05 s (as the profile does, written out again here)."""
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        once = time.perf_counter() - t0
        calls = max(1, min(math.ceil(0.05 / max(once, 1e-6)), 1000))
        if calls == 1:
            return once
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / calls

    module.eval()
    with torch.no_grad():
        if not generate:
            module(input_ids=one, attention_mask=torch.ones_like(one))
            module(input_ids=many, attention_mask=torch.ones_like(many))
            single = [clocked(lambda: module(input_ids=one, attention_mask=torch.ones_like(one))) for _ in range(repeats)]
            batched = [clocked(lambda: module(input_ids=many, attention_mask=torch.ones_like(many)))
                       for _ in range(repeats)]
            return {"examples_per_s": 1 / statistics.median(single),
                    "examples_per_s_batch": batch / statistics.median(batched)}

        from harness.methods.base import generate  # model.generate, but right for peft's soft prompts

        def gen(ids, n):
            return lambda: generate(module, input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                    min_new_tokens=n, do_sample=False, pad_token_id=pad)

        for ids in (one, many):
            gen(ids, new_tokens)()
        t = {key: [] for key in ("1_1", "n_1", "1_b", "n_b")}
        for _ in range(repeats):
            t["1_1"].append(clocked(gen(one, 1)))
            t["n_1"].append(clocked(gen(one, new_tokens)))
            t["1_b"].append(clocked(gen(many, 1)))
            t["n_b"].append(clocked(gen(many, new_tokens)))
        # T(n) - T(1) of calls made back to back, then the median over repeats
        step_1 = statistics.median(n - o for n, o in zip(t["n_1"], t["1_1"])) / (new_tokens - 1)
        step_b = statistics.median(n - o for n, o in zip(t["n_b"], t["1_b"])) / (new_tokens - 1)
        return {"decode_ms_per_token": step_1 * 1000, "decode_tokens_per_s_batch": batch / step_b if step_b > 0 else None}


KEYS = {True: ("decode_ms_per_token", "decode_tokens_per_s_batch"), False: ("examples_per_s", "examples_per_s_batch")}


def run_serving_bench(suite: Suite, repeats: int = 5, json_out: str | None = None) -> dict:
    from harness.measure.serving import Timer, Workload, variants
    from harness.runner.bench import bench_setup
    from harness.runner.trial import Trial, TrialHooks, setup_model

    cell, prepared, device, job = bench_setup(suite)
    spec = suite.serving
    generate = prepared.head.auto_class == "AutoModelForCausalLM"
    trial = Trial(job, prepared, TrialHooks(lambda m: None, lambda v, s: False))
    pad = prepared.tokenizer.pad_token_id if prepared.tokenizer.pad_token_id is not None else 0
    batch = spec.batch if generate else suite.training.eval_batch_size
    work = Workload.of(trial.held_out_inputs(max(64, batch)), pad, generate=generate, batch=batch,
                       new_tokens=spec.new_tokens, check_inputs=spec.check_inputs)
    model, _ = setup_model(job, prepared)
    timer = Timer(work, device)
    out: dict = {"device": device, "model": cell.model.label, "method": cell.method.name, "mode":
                 "generate" if generate else "forward", "prompt_tokens": work.length, "batch": batch,
                 "new_tokens": spec.new_tokens, "repeats": repeats, "variants": []}
    first, second = KEYS[generate]
    found = variants(model, cell.method, lambda: prepared.load_variant().to(device))
    for v in found:
        with v.view() as module:
            timer.warm(module)
    runs = {v.name: {"harness": [], "bare": []} for v in found}
    for _ in range(repeats):  # interleaved: a slow spell of the machine hits every variant and both paths alike
        for v in found:
            with v.view() as module:
                runs[v.name]["harness"].append(timer.figures([timer.round(module) for _ in range(spec.rounds)]))
                runs[v.name]["bare"].append(bare_timing(module, work.rows, batch, spec.new_tokens, pad, generate,
                                                        device, spec.rounds))
    for name, paths in runs.items():
        row = {"variant": name}
        for path, results in paths.items():
            for key in (first, second):
                row[f"{path}_{key}"] = statistics.median(r[key] for r in results if r.get(key) is not None)
        row["ratio"] = row[f"harness_{first}"] / row[f"bare_{first}"]
        row["ratio_batch"] = row[f"harness_{second}"] / row[f"bare_{second}"]
        out["variants"].append(row)
    if json_out:
        Path(json_out).write_text(json.dumps(out, indent=2))
    return out


def print_serving_bench(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    generate = out["mode"] == "generate"
    first, second = KEYS[generate]
    table = Table(title=f"bench --serving: {out['model']} · {out['method']} on {out['device']} · "
                        f"{out['prompt_tokens']}-token inputs" + (f", {out['new_tokens']} new tokens" if generate else "")
                        + f", batch {out['batch']}; median of {out['repeats']} interleaved runs", title_justify="left")
    labels = (("decode ms/token (batch 1)", f"tokens/s (batch {out['batch']})") if generate else
              ("examples/s (batch 1)", f"examples/s (batch {out['batch']})"))
    table.add_column("variant")
    for label in labels:
        table.add_column(f"harness {label}", justify="right")
        table.add_column(f"bare {label}", justify="right")
        table.add_column("ratio", justify="right")
    for row in out["variants"]:
        table.add_row(row["variant"], f"{row[f'harness_{first}']:.2f}", f"{row[f'bare_{first}']:.2f}",
                      f"{row['ratio']:.3f}", f"{row[f'harness_{second}']:.1f}", f"{row[f'bare_{second}']:.1f}",
                      f"{row['ratio_batch']:.3f}")
    console = Console(highlight=False, width=160)
    console.print(table)
    worst = max(abs(r[k] - 1) for r in out["variants"] for k in ("ratio", "ratio_batch"))
    console.print(f"largest difference harness vs bare loop: {worst:.1%}"
                  f" ({'within' if worst <= 0.05 else 'over'} 5%)")
