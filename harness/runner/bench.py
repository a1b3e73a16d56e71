"""`harness bench`: one configuration through the harness's trial path and through a bare PyTorch
loop (same prepared model, method, data, batch size, steps, optimizer), each in its own forked
process, so the harness's throughput and memory can be judged against the plainest way to train."""

from __future__ import annotations

import dataclasses

import json
import os
import time
from pathlib import Path

from harness.records.schema import TrialRecord
from harness.runner.isolation import fork_call, run_isolated
from harness.runner.jobs import TrialJob, make_job
from harness.plan import plan
from harness.runner.prepare import Prepared
from harness.runner.trial import TrialHooks, phase_memory, setup_model
from harness.spec import LoadedSuite, Suite


def bench_raw(model: str, method: str, steps: int, batch_size: int, max_length: int, data: str,
              dtype: str = "float32", params: dict | None = None, phase_peaks: bool = True,
              head: str = "classification", acceleration: dict | None = None, eval_batch_size: int = 64,
              test_size: int | None = None) -> dict:
    """The one-cell suite a bench runs, as the dict a suite file would hold. head causal-lm: a decoder
    trains its language-modelling head (the classification task's verbalizer: the text as the
    prompt, the label word as the answer), so every step pays the LM head's logits over all
    positions, as a causal-LM fine-tune does."""
    from harness.tasks.builtin_data import BUILTIN_DATA

    kind = BUILTIN_DATA.get(data).kind if data in BUILTIN_DATA else "classification"  # else validate names it
    task = {"name": "bench", "kind": kind, "data": {"builtin": data}}
    if head == "causal-lm" and kind == "classification":
        task["head"] = "verbalizer"
    if test_size:
        task["data"]["test_size"] = test_size
    return {
        "name": "bench", "models": [{"source": model, "max_length": max_length, "dtype": dtype}],
        "tasks": [task], "methods": [{"name": method, "params": params or {}}],
        "search": {"trials_per_cell": 1, "strategy": "none"}, "references": False,
        "training": {"max_steps": steps, "batch_size": batch_size, "eval_batch_size": eval_batch_size},
        "measure": {"phase_peaks": phase_peaks}, "acceleration": acceleration or {},
    }


def bench_suite(*args, **kwargs) -> Suite:
    return Suite.model_validate(bench_raw(*args, **kwargs))


def bare_loop(job: TrialJob, prepared: Prepared) -> dict:
    """The plainest loop: DataLoader, forward, backward, clip, AdamW step, linear schedule. Runs in the
    bench's forked child; returns tokens/s, median step time and peak memory."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from transformers import get_scheduler, set_seed

    from harness.measure.speed import StepTimer

    from harness.tasks.packing import REAL_TOKENS
    from harness.runner.trial import compile_clock, compile_seconds, no_cache_in_training

    set_seed(job.seed)
    memory = phase_memory(job, prepared)
    memory.start("load")
    model, _ = setup_model(job, prepared)
    model.train()
    memory.stop("load")
    accel = job.acceleration
    if accel.kernels == "liger":  # the call the Trainer makes for use_liger_kernel
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(model, None)
    if accel.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    forward = torch.compile(model) if accel.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=job.training.learning_rate, weight_decay=job.training.weight_decay)
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=job.training.max_steps)
    generator = torch.Generator().manual_seed(job.seed)
    loader = DataLoader(prepared.data["train"], batch_size=job.training.batch_size,
                        sampler=RandomSampler(prepared.data["train"], generator=generator),
                        collate_fn=prepared.head.collator(prepared.tokenizer, packing=accel.packing,
                                                          attention=accel.attention))
    timer, tokens, step = StepTimer(cuda=job.device == "cuda"), 0, 0
    memory.start("train")
    compiled_before = compile_clock() if accel.compile else 0.0
    t0 = time.perf_counter()
    with no_cache_in_training(model):
        while step < job.training.max_steps:
            for batch in loader:
                timer.begin()
                batch = {k: v.to(job.device) for k, v in batch.items()}
                real = batch.pop(REAL_TOKENS, None)  # a packed batch's non-padding tokens (not a model input)
                loss = forward(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)  # as the Trainer does (max_grad_norm=1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(real if real is not None else batch["attention_mask"].sum() if "attention_mask" in batch
                              else batch["input_ids"].numel())
                timer.end()
                step += 1
                if step == job.training.max_steps:
                    break
    compile_s = compile_seconds() - compiled_before if accel.compile else 0.0
    train_s = time.perf_counter() - t0 - compile_s  # as the harness counts it: compilation apart
    memory.stop("train")
    memory.close()
    return {"train_tokens": tokens, "train_s": train_s, "tokens_per_s": tokens / train_s, "compile_s": compile_s,
            "median_step_s": timer.median_after_warmup(), "peak_bytes": memory.peak_bytes,
            "train_peak_bytes": memory.peaks.get("train", 0), "train_bytes": memory.above_baseline("train") or 0,
            "memory_source": memory.source, "gpu": memory.gpu}


def _bare_isolated(job: TrialJob, prepared: Prepared) -> dict:
    pid, conn = fork_call(lambda j, p, c: c.send(bare_loop(j, p)), job, prepared)
    try:
        result = conn.recv()
    finally:
        conn.close()
        _, _, usage = os.wait4(pid, 0)
    return dict(result, kernel_max_rss_bytes=usage.ru_maxrss * 1024)


def _median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (a 2-core machine is noisy; one run can mislead)."""
    ordered = sorted(runs, key=lambda r: r["tokens_per_s"])
    return dict(ordered[len(ordered) // 2], runs_tokens_per_s=[round(r["tokens_per_s"], 1) for r in runs])


def _harness_once(job: TrialJob, prepared: Prepared) -> dict:
    record: TrialRecord = run_isolated(job, prepared, TrialHooks(lambda m: None, lambda v, s: False))
    if record.status != "complete":
        raise RuntimeError(f"harness trial {record.status}: {record.reason}")
    return {"train_tokens": record.throughput.train_tokens, "train_s": record.timing.train_s,
            "tokens_per_s": record.throughput.train_tokens_per_s,
            "median_step_s": record.throughput.median_step_s, "peak_bytes": record.memory.peak_bytes,
            "train_peak_bytes": record.memory.by_phase_peak_bytes.get("train", 0),
            "train_bytes": record.memory.train_bytes or 0,
            "kernel_max_rss_bytes": record.memory.kernel_max_rss_bytes, "memory_source": record.memory.source,
            "gpu": record.memory.gpu, "train_joules": record.energy.train_joules,
            "joules_per_step": record.energy.train_joules / record.throughput.train_steps
            if record.energy.train_joules is not None and record.throughput.train_steps else None,
            "mfu": record.throughput.mfu, "achieved_tflops": record.throughput.achieved_tflops,
            "compile_s": record.timing.compile_s, "eval_samples_per_s": record.throughput.eval_samples_per_s,
            "eval_s": record.timing.eval_s}


def bench_setup(suite: Suite):
    """The bench's one cell, prepared, on its device, with its job: (cell, prepared, device, job)."""
    from harness.runner.prepare import Preparer, pick_device
    from harness.runner.stack import preload, quiet_libraries

    quiet_libraries()
    preload()
    loaded = LoadedSuite(suite=suite, path=Path.cwd() / "bench.yaml", text="")
    [cell] = plan(suite)
    prepared = Preparer(loaded.base_dir, seed=0).get(cell.model, cell.task)
    device = pick_device(suite.training.device)
    return cell, prepared, device, make_job(loaded, cell, trial_number=0, seed=0, device=device, suite_hash="bench")


def run_bench(suite: Suite, only: str | None = None, json_out: str | None = None, repeats: int = 3) -> dict:
    cell, prepared, device, job = bench_setup(suite)
    # the bench times training; retention and the serving profile have no bare twin here
    job = dataclasses.replace(job, retention=None, serving=None)
    out: dict = {"device": device, "model": cell.model.label, "method": cell.method.name,
                 "steps": suite.training.max_steps, "batch_size": suite.training.batch_size, "repeats": repeats,
                 "head": prepared.head.name, "acceleration": cell.acceleration.label(),
                 "eval_batch_size": suite.training.eval_batch_size}
    runs: dict[str, list[dict]] = {"harness": [], "bare": []}
    for _ in range(repeats):  # interleaved, so a slow spell of the machine hits both paths alike
        if only in (None, "harness"):
            runs["harness"].append(_harness_once(job, prepared))
        if only in (None, "bare"):
            runs["bare"].append(_bare_isolated(job, prepared))
    for path, results in runs.items():
        if results:
            out[path] = _median_run(results)
    if "harness" in out and "bare" in out:
        out["throughput_ratio"] = out["harness"]["tokens_per_s"] / out["bare"]["tokens_per_s"]
    if json_out:
        Path(json_out).write_text(json.dumps(out, indent=2))
    return out


def print_bench(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bench: {out['model']} · {out['method']} · {out.get('head', '')} head · "
                        f"{out.get('acceleration', 'eager')} · {out['steps']} steps x batch {out['batch_size']} "
                        f"on {out['device']}", title_justify="left")
    peak = "torch reserved" if out["device"] == "cuda" else "RSS"
    for col in ("path", "tokens", "train s", "tokens/s", "median step ms", "train MiB (above baseline)",
                f"peak MiB ({peak}, whole trial)", f"train-phase peak MiB ({peak})", "host ru_maxrss MiB (wait4)"):
        table.add_column(col, justify="right")
    for path in ("harness", "bare"):
        if path in out:
            r = out[path]
            table.add_row(path, str(r["train_tokens"]), f"{r['train_s']:.2f}", f"{r['tokens_per_s']:.0f}",
                          f"{1000 * r['median_step_s']:.1f}", f"{r['train_bytes'] / 2**20:.0f}",
                          f"{r['peak_bytes'] / 2**20:.0f}",
                          f"{r['train_peak_bytes'] / 2**20:.0f}", f"{r['kernel_max_rss_bytes'] / 2**20:.0f}")
    console = Console(highlight=False, width=160)
    console.print(table)
    for path in ("harness", "bare"):
        gpu = out.get(path, {}).get("gpu") or {}
        if gpu:
            gib = lambda key: f"{gpu.get(key, 0) / 2**30:.1f}"
            line = (f"{path}: torch peak allocated {gib('train_peak_allocated_bytes')} GiB, reserved "
                    f"{gib('train_peak_reserved_bytes')} GiB; NVML process {gib('nvml_peak_process_used_bytes')} GiB, "
                    f"device {gib('nvml_peak_device_used_bytes')} GiB; reserved avg {gib('reserved_avg_bytes')} / "
                    f"p99 {gib('reserved_p99_bytes')} GiB")
            r = out[path]
            if r.get("joules_per_step") is not None:
                line += f"; {r['joules_per_step']:.1f} J/step"
            if r.get("mfu") is not None:
                line += f"; MFU {100 * r['mfu']:.1f}% ({r['achieved_tflops']:.0f} TFLOP/s)"
            console.print(line)
    for path in ("harness", "bare"):
        r = out.get(path, {})
        if r.get("compile_s"):
            console.print(f"{path}: torch.compile took {r['compile_s']:.1f} s (left out of train s and tokens/s)")
    if out.get("harness", {}).get("eval_samples_per_s"):
        h = out["harness"]
        console.print(f"evaluation (test split, eval batch {out.get('eval_batch_size')}): "
                      f"{h['eval_samples_per_s']:.1f} samples/s ({h['eval_s']:.1f} s)")
    if "harness" in out and "bare" in out:
        extra_ms = 1000 * (out["harness"]["median_step_s"] - out["bare"]["median_step_s"])
        console.print(f"median step: harness {1000 * out['harness']['median_step_s']:.1f} ms, bare "
                      f"{1000 * out['bare']['median_step_s']:.1f} ms (harness {extra_ms:+.1f} ms a step)"
                      + ("; one run per path is noisy, see --repeats" if out["repeats"] < 3 else ""))
    if "throughput_ratio" in out:
        console.print(f"throughput ratio harness / bare loop: {out['throughput_ratio']:.3f} (median of "
                      f"{out['repeats']} interleaved runs each; tokens/s per run: harness "
                      f"{out['harness']['runs_tokens_per_s']}, bare {out['bare']['runs_tokens_per_s']})")
    src = out.get("harness", out.get("bare", {})).get("memory_source", "")
    console.print(f"memory source: {src}")
