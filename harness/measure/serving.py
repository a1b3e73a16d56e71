"""What a tuned model costs to serve (suite `serving:`), measured in the trial process after training,
on the trial's device, with the same memory sources as training (harness/measure/memory.py).

Each variant that applies to the method is timed on the same held-out inputs:

- base: the model without the method's additions (peft's tuner layers and our bottleneck adapters
  swapped for the layers they wrap, no copy; soft prompts: the wrapped model). For full fine-tuning
  and the selective methods the tuned model *is* the base's computation (other values, same
  layers), so it is timed as the base too, and its overhead is the noise floor of the measure;
- adapter: the model as trained, adapters unmerged (for quantized methods: on the quantized base);
- quantized_base: quantized methods, the quantized base alone;
- merged: mergeable methods, the update folded into the weights and the wrappers swapped out: what
  peft's merge_and_unload returns, through merge_adapter (undone after each measure, so the
  variants can be timed in turns); for quantized methods into a fresh copy of the base at the
  suite's dtype (the way a QLoRA adapter is served merged), never into the 4-bit weights.

Decoders (a causal-LM head): prefill tokens/s over one prompt of the task's median prompt length,
and decode ms per step at batch 1 and at `serving.batch`: greedy `generate` with the KV cache,
forced to `new_tokens` tokens, the step time being (T(new_tokens) - T(1)) / (new_tokens - 1), so
prefill is not counted as decoding. Other heads: examples/s at batch 1 and at the eval batch.
Warm-up first, then rounds of every measure, the median over rounds (nanoGPT's bench.py habit);
each round times every variant once, so a slow spell of the machine hits all of them alike.

Memory of a variant: its weights and buffers as held, plus the working set of its largest
measure (activations, KV cache) read as the peak above what was resident before it (CUDA: the
allocator's peak; CPU: VmHWM after a reset). Several variants live in the process at once, so the
process's peak is not any one variant's figure.

Hand-written because no library profiles a peft method's serving variants side by side; peft's own
method_comparison times one LoRA against the base (`inference_overhead_pct`)."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.measure.memory import model_bytes

MIN_CALL_S = 0.05  # a timed measure repeats its call until it lasts this long (set from the first warm-up)

DESCRIBED = {
    "base": "the base model: the method's additions swapped out (no copy)",
    "base_same": "the tuned weights in the base's own layers: the base's computation",
    "tuned": "the tuned model (the artifact is the whole model or its changed tensors)",
    "adapter": "as trained, adapters unmerged",
    "adapter_quantized": "as trained: adapters on the quantized base",
    "quantized_base": "the quantized base alone",
    "merged": "the update merged into the weights, no wrappers (as peft's merge_and_unload gives it)",
    "merged_reloaded": "the adapter merged into a fresh copy of the base at the suite's dtype",
    "reloaded_base": "a fresh copy of the base at the suite's dtype",
}


@dataclass
class Workload:
    """The held-out inputs every variant is timed and checked on."""

    rows: list[list[int]]  # timing inputs, each `length` tokens (prompts cut from the left: they end where
    #                        the answer starts)
    length: int
    pad: int
    generate: bool  # a causal-LM head: prefill and decode; otherwise forward passes (examples/s)
    batch: int  # the batched measure's batch size (decoders: serving.batch; others: the eval batch)
    new_tokens: int
    check: list[list[int]]  # inputs for the merged-vs-unmerged check, as they are

    @classmethod
    def of(cls, rows: list[list[int]], pad: int, *, generate: bool, batch: int, new_tokens: int,
           check_inputs: int) -> "Workload":
        rows = [list(r) for r in rows if len(r) > 0]
        if not rows:
            raise ValueError("no held-out inputs to time serving on")
        length = int(statistics.median(len(r) for r in rows))
        long = [r[-length:] for r in rows if len(r) >= length]
        timing = [long[i % len(long)] for i in range(max(batch, 1))]
        return cls(rows=timing, length=length, pad=pad, generate=generate, batch=batch, new_tokens=new_tokens,
                   check=rows[:check_inputs])


@dataclass
class Clock:
    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _batch(rows: list[list[int]], device: str):
    import torch

    ids = torch.tensor(rows, device=device)
    return ids, torch.ones_like(ids)


class Timer:
    """The measures of one workload: a warm-up per variant (where its working set is read), then timed
    rounds, every variant once per round (interleaved, so a slow spell of the machine hits all alike)."""

    def __init__(self, work: Workload, device: str, min_call_s: float = MIN_CALL_S):
        self.work, self.device, self.min_call_s = work, device, min_call_s
        self.calls: dict[str, int] = {}  # calls per timed measure, so each lasts min_call_s (set at the first warm-up)

    def measures(self, module) -> dict[str, Callable[[], Any]]:
        work, device = self.work, self.device
        one, one_mask = _batch(work.rows[:1], device)
        many, many_mask = _batch(work.rows[:work.batch], device)
        if not work.generate:
            return {"forward_1": lambda: module(input_ids=one, attention_mask=one_mask),
                    "forward_batch": lambda: module(input_ids=many, attention_mask=many_mask)}

        from harness.methods.base import generate as peft_aware_generate  # soft prompts: see there

        def generate(ids, mask, n):
            return lambda: peft_aware_generate(module, input_ids=ids, attention_mask=mask, max_new_tokens=n,
                                               min_new_tokens=n, do_sample=False, pad_token_id=work.pad,
                                               use_cache=True)

        n = work.new_tokens
        return {"prefill": lambda: module(input_ids=one, attention_mask=one_mask, use_cache=True),
                "gen1_1": generate(one, one_mask, 1), "genN_1": generate(one, one_mask, n),
                "gen1_batch": generate(many, many_mask, 1), "genN_batch": generate(many, many_mask, n)}

    def warm(self, module, memory=None, tag: str = "") -> int:
        """Every measure once (the first call of a shape allocates and tunes); returns the working set
        of the batched one."""
        import torch

        module.eval()
        largest = "genN_batch" if self.work.generate else "forward_batch"
        working = 0
        with torch.inference_mode():
            for name, fn in self.measures(module).items():
                if name == largest:
                    working = _working_set(fn, self.device, memory, tag)
                else:
                    fn()
                if name not in self.calls:  # every variant makes as many calls: the same work for each
                    seconds = _timed(fn, self.device)
                    self.calls[name] = max(1, min(math.ceil(self.min_call_s / max(seconds, 1e-6)), 1000))
        return working

    def round(self, module) -> dict[str, float]:
        """Seconds of one call of every measure, each timed over as many calls as make min_call_s (timeit's
        habit: a call of a few milliseconds is mostly the clock's and the scheduler's noise)."""
        import torch

        module.eval()
        with torch.inference_mode():
            out = {}
            for name, fn in self.measures(module).items():
                calls = self.calls.get(name, 1)
                out[name] = _timed(lambda: [fn() for _ in range(calls)], self.device) / calls
            return out

    def per_round(self, r: dict[str, float]) -> dict[str, float]:
        """One round's seconds turned into what is reported: decoders' prefill, decode per token at batch 1
        and per step at the batch, (T(n) - T(1)) / (n - 1) within the round; other heads' seconds per call."""
        if not self.work.generate:
            return {"latency": r["forward_1"], "batch": r["forward_batch"]}
        steps = max(self.work.new_tokens - 1, 1)
        return {"prefill": r["prefill"], "latency": max(r["genN_1"] - r["gen1_1"], 0.0) / steps,
                "batch": max(r["genN_batch"] - r["gen1_batch"], 0.0) / steps}

    def figures(self, rounds: list[dict[str, float]]) -> dict:
        """Medians over rounds of each round's figures; spread: the relative range of the latency over rounds."""
        per = [self.per_round(r) for r in rounds]
        med = {k: statistics.median(p[k] for p in per) for k in per[0]}
        latencies = [p["latency"] for p in per]
        out = {"rounds": len(rounds),
               "spread": (max(latencies) - min(latencies)) / med["latency"] if med["latency"] else 0.0}
        work = self.work
        if work.generate:
            out.update(prefill_tokens_per_s=work.length / med["prefill"] if med["prefill"] else None,
                       decode_ms_per_token=med["latency"] * 1000.0, decode_ms_per_step_batch=med["batch"] * 1000.0,
                       decode_tokens_per_s_batch=work.batch / med["batch"] if med["batch"] else None)
        else:
            out.update(examples_per_s=1.0 / med["latency"] if med["latency"] else None,
                       examples_per_s_batch=work.batch / med["batch"] if med["batch"] else None)
        return out

    def overhead(self, rounds: list[dict[str, float]], base: list[dict[str, float]]) -> dict:
        """Slower than the base by this %, paired by round (each round times every variant once): the
        median of the rounds' ratios of latency, and their lowest and highest (None where the base's
        latency reads 0, a model too small to time)."""
        ratios = []
        for mine, theirs in zip(rounds, base):
            a, b = self.per_round(mine)["latency"], self.per_round(theirs)["latency"]
            if b > 0:
                ratios.append((a / b - 1.0) * 100.0)
        if not ratios:
            return {"overhead_pct": None, "overhead_low_pct": None, "overhead_high_pct": None}
        return {"overhead_pct": statistics.median(ratios), "overhead_low_pct": min(ratios),
                "overhead_high_pct": max(ratios)}


def _working_set(fn, device: str, memory, tag: str) -> int:
    """Bytes the call needs above what was resident when it began (activations, KV cache)."""
    from harness.measure.memory import current_rss_bytes

    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return max(int(torch.cuda.max_memory_allocated() - before), 0)
    if memory is not None:  # the trial's PhaseMemory: its reset keeps the whole-life peak
        memory.start(f"serving:{tag}")
        before = current_rss_bytes()
        fn()
        return max(memory.stop(f"serving:{tag}") - before, 0)
    from harness.measure.memory import peak_rss_bytes, release_free_heap, reset_peak_rss

    release_free_heap()
    reset_peak_rss()
    before = current_rss_bytes()
    fn()
    return max(peak_rss_bytes() - before, 0)


def logits(module, rows: list[list[int]], device: str) -> list:
    """Each input's logits (float32, on the CPU), one forward per input, no padding."""
    import torch

    out = []
    module.eval()
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row], device=device)
            out.append(module(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float().cpu())
    return out


def compare(reference: list, other: list) -> dict:
    """Largest absolute logit difference, and predictions (argmax per position, or per input for a
    classifier) that differ."""
    diff, changed, total = 0.0, 0, 0
    for a, b in zip(reference, other):
        diff = max(diff, float((a - b).abs().max()))
        pa, pb = a.argmax(-1), b.argmax(-1)
        changed += int((pa != pb).sum())
        total += int(pa.numel())
    return {"inputs": len(reference), "max_abs_diff": diff, "predictions_changed": changed, "predictions": total}


def _is_bottleneck(module) -> bool:
    return type(module).__name__ == "BottleneckAdapter" and hasattr(module, "projection")


def _inner(module, trained_heads: bool = False):
    """The layer a method's addition wraps, or None: peft's tuner layers, its modules_to_save wrapper
    (the trained copy where trained_heads, else the original), our bottleneck adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if isinstance(module, BaseTunerLayer):
        return module.get_base_layer()
    if type(module).__name__ == "ModulesToSaveWrapper":
        return module.modules_to_save[module.active_adapters[0]] if trained_heads else module.original_module
    if _is_bottleneck(module):
        return module.projection
    return None


@contextmanager
def structural_base(model, trained_heads: bool = False):
    """The base's own computation, without a copy: every wrapped layer swapped back in for its
    wrapper, the outer peft model left out; put back as it was on exit. With the adapters merged into
    the wrapped layers (merged_view) and trained_heads, it is what merge_and_unload would return."""
    from harness.methods.base import is_peft

    root = model.get_base_model() if is_peft(model) else model
    swaps = []
    for name, module in list(root.named_modules()):
        if any(name.startswith(done + ".") for done, _, _ in swaps):
            continue
        inner = _inner(module, trained_heads)
        if inner is not None and name:
            swaps.append((name, module, inner))
    try:
        for name, _, inner in swaps:
            parent, _, child = name.rpartition(".")
            setattr(root.get_submodule(parent) if parent else root, child, inner)
        yield root
    finally:
        for name, wrapper, _ in swaps:
            parent, _, child = name.rpartition(".")
            setattr(root.get_submodule(parent) if parent else root, child, wrapper)


def kind(model, method) -> str:
    from harness.methods.base import is_peft

    if method.load_kwargs is not None and is_peft(model):
        return "quantized"
    if is_peft(model):
        config = model.peft_config[model.active_adapter]
        if config.is_prompt_learning:
            return "prompt"
        return "merge" if method.can_merge else "adapter"
    if any(_is_bottleneck(m) for m in model.modules()):
        return "adapter"
    return "same"


@contextmanager
def merged_view(model):
    """The peft model with its update merged into the wrapped layers and the wrappers swapped out: the
    computation merge_and_unload gives, without giving up the unmerged model (peft's merge_adapter, and
    unmerge_adapter on exit, which subtracts the update again: float rounding is all it leaves)."""
    model.merge_adapter()
    try:
        with structural_base(model, trained_heads=True) as merged:
            yield merged
    finally:
        model.unmerge_adapter()


@dataclass
class Variant:
    name: str
    key: str  # its description in DESCRIBED
    view: Callable[[], Any]  # a context manager that gives the module to time


def variants(model, method, reload_base: Callable[[], Any] | None = None) -> list[Variant]:
    """Every variant that applies, each a view entered for each measure: one list for the profile and
    for the bench's bare loop, so both time the same modules. A quantized method's full-precision base
    is loaded here (reload_base) and its adapter put on it, unmerged."""
    from contextlib import nullcontext

    how = kind(model, method)
    same = lambda: nullcontext(model)  # noqa: E731
    base = lambda: structural_base(model)  # noqa: E731
    if how == "same":
        return [Variant("base", "base_same", same), Variant("tuned", "tuned", same)]
    if how in ("prompt", "adapter"):
        return [Variant("base", "base", base), Variant("adapter", "adapter", same)]
    if how == "merge":
        return [Variant("base", "base", base), Variant("adapter", "adapter", same),
                Variant("merged", "merged", lambda: merged_view(model))]
    if reload_base is None:
        raise ValueError("a quantized method's merged variant needs the base at the suite's dtype")
    attached = _attach(model, reload_base())
    return [Variant("adapter", "adapter_quantized", same), Variant("quantized_base", "quantized_base", base),
            Variant("base", "reloaded_base", lambda: structural_base(attached)),
            Variant("merged", "merged_reloaded", lambda: merged_view(attached))]


def profile(model, *, method, params, work: Workload, device: str, rounds: int, seconds: float,
            reload_base: Callable[[], Any] | None = None, memory=None, price_per_gpu_hour: float | None = None,
            artifact_bytes: int | None = None) -> dict:
    """Every variant's figures, the merge check and what the artifact is: the fields of
    records.schema.Serving. Rounds go on past the first while the time cap allows, up to `rounds`."""
    t0 = time.perf_counter()
    how = kind(model, method)
    found = variants(model, method, reload_base)
    check = None
    if how in ("merge", "quantized"):
        with found[[v.name for v in found].index("adapter")].view() as module:
            unmerged = logits(module, work.check, device)
        with found[-1].view() as module:
            check = {"compared": "merged vs adapter" if how == "merge" else
                     "merged (suite dtype) vs adapter on the quantized base",
                     **compare(unmerged, logits(module, work.check, device))}
    timer = Timer(work, device)
    out = []
    for v in found:
        with v.view() as module:
            out.append({"name": v.name, "description": DESCRIBED[v.key], "weights_bytes": model_bytes(module),
                        "working_bytes": timer.warm(module, memory, v.name)})
    timed: list[list[dict]] = [[] for _ in found]
    clock = Clock(seconds - (time.perf_counter() - t0))
    while len(timed[0]) < rounds and (not timed[0] or clock.left() > 0):
        for i, v in enumerate(found):
            with v.view() as module:
                timed[i].append(timer.round(module))
    base = timed[[v.name for v in found].index("base")]
    for row, times in zip(out, timed):
        row.update(timer.figures(times), **timer.overhead(times, base))
    ships = "merged" if how in ("merge", "quantized") else "tuned" if how == "same" else "adapter"
    shipped = next(v for v in out if v["name"] == ships)
    cost = None
    if price_per_gpu_hour is not None and device == "cuda" and shipped.get("decode_tokens_per_s_batch"):
        cost = price_per_gpu_hour / 3600.0 * 1e6 / shipped["decode_tokens_per_s_batch"]
    return {"mode": "generate" if work.generate else "forward", "prompt_tokens": work.length,
            "new_tokens": work.new_tokens if work.generate else 0, "batch": work.batch, "device": device,
            "variants": out, "ships": ships, "merge_check": check, "artifact_bytes": artifact_bytes,
            "cost_per_million_tokens": cost, "budget_s": seconds, "seconds": time.perf_counter() - t0,
            **artifact_of(method, params, how)}


def artifact_of(method, params, how: str) -> dict:
    """What the served artifact is: whether it folds into the weights (full fine-tuning and the
    selective methods: the tuned model is the artifact), the virtual tokens each request carries
    (prompt tuning, P-tuning) and the key/value entries it adds to every layer's cache (prefix tuning)."""
    out = {"mergeable": how in ("merge", "quantized", "same"), "extra_tokens": 0, "cache_entries_per_layer": 0}
    virtual = int(getattr(params, "num_virtual_tokens", 0) or 0)
    if how == "prompt":
        if method.soft_prompt:
            out["extra_tokens"] = virtual
        else:
            out["cache_entries_per_layer"] = virtual
    return out


def _attach(trained, fresh):
    """The trained adapter, as peft saves it, loaded onto a fresh base (unmerged): how an adapter trained
    on a quantized base is served on a full-precision one."""
    from peft import PeftModel

    with tempfile.TemporaryDirectory(prefix="harness-serving-") as folder:
        trained.save_pretrained(folder)
        return PeftModel.from_pretrained(fresh, folder)
