"""Predicted peak training memory and speed of a cell, from the model's config alone.

Memory: one training step simulated on fake tensors (harness/estimate/simulate.py) with the
method applied as a trial applies it, so activations come from what autograd really saves for
this architecture, attention implementation, dtype, method (adapter dropout, casts) and
checkpointing; bitsandbytes' packed weights and 8-bit optimizer states by arithmetic
(harness/estimate/parts.py). The peak is what the torch allocator would hold (weights + gradients
+ optimizer states + activations, as `max_memory_allocated`); the CUDA context is added apart for
whether a cell fits.

Time: FLOPs per token from the same count as the MFU (harness/measure/flops.py) over the device's
peak times an assumed utilization (ASSUMED_MFU, stated in every estimate; `harness estimate
--calibrate` replaces it with what records measured)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.estimate.parts import CUDA_CONTEXT_BYTES, optimizer_bytes, quantized_weight_bytes
from harness.methods.base import is_peft

# GPU kinds for --gpu: (datasheet name in harness.measure.flops.PEAKS, memory in bytes as the driver reports it)
GPUS = {
    "h100": ("H100", 81559 * 2**20), "h100-pcie": ("H100 PCIe", 81559 * 2**20), "h200": ("H200", 143771 * 2**20),
    "a100": ("A100", 81920 * 2**20), "a100-40gb": ("A100", 40960 * 2**20), "l40s": ("L40S", 46068 * 2**20),
    "l4": ("L4", 23034 * 2**20), "a10g": ("A10G", 23028 * 2**20), "rtx4090": ("RTX 4090", 24564 * 2**20),
}


def unknown_gpu(kind: str | None) -> str | None:
    """What is wrong with a GPU kind the table does not hold (None: a known kind, or none given)."""
    return None if kind is None or kind in GPUS else f"unknown GPU kind {kind!r}; known: {', '.join(GPUS)}"


# Model FLOP utilization assumed for the time estimate: on a GPU, the 36% full fine-tuning of a 1.1B
# Llama reaches eagerly in bf16 on an H100 (issue 17's measurement); on a CPU, of the float32 matmul
# peak timed on the host. Calibration from records replaces it per method.
ASSUMED_MFU = {"cuda": 0.35, "cpu": 0.30}

@dataclass
class CellEstimate:
    cell_id: str
    method: str
    micro_batch: int
    seq_len: int
    device: str
    predicted_peak_bytes: int  # GPU: what torch allocates at the step peak (no CUDA context); CPU: resident, runtime included
    parts: dict[str, int]
    fits: bool | None  # None: no memory limit known
    max_micro_batch: int | None
    predicted_tokens_per_s: float | None
    memory_limit_bytes: int | None = None
    assumptions: list[str] = field(default_factory=list)
    processes: int = 1  # the ranks this prediction is per rank of (runner.distributed)
    strategy: str = "ddp"
    # the fewest FSDP ranks at which the method fits the target (None: no memory limit known; 0: not even
    # at MAX_PROCESSES)
    min_processes: int | None = None
    # the same cell with the other adapter_dtype (the LoRA family and QLoRA on a bf16/fp16 model): its peak
    other_adapter_dtype: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """Where the cell would run: the device kind, its memory and its peak FLOP/s."""

    device: str  # cuda or cpu
    memory_limit_bytes: int | None
    peak_flops: float | None
    peak_source: str
    gpu_name: str | None = None
    cpu_allocator: Any = None  # CPU: parts.CpuAllocator, resident memory beyond the tensors


def target_for(device: str, gpu: str | None, gpu_memory: int | None, memory_limit: str | None) -> Target:
    """--gpu KIND simulates that GPU; otherwise the suite's device as this host has it. The memory to
    fit in: --gpu-memory, then the suite's runner.memory_limit (as the suite writes it, e.g. 40GiB),
    then the GPU kind's or the device's own."""
    from harness.measure.flops import PEAKS, peak_flops
    from harness.spec import parse_bytes

    runner_limit = parse_bytes(memory_limit) if memory_limit else None

    if gpu is not None:
        name, memory = GPUS[gpu]
        limit = gpu_memory or runner_limit or memory
        return Target("cuda", limit, PEAKS[name]["bfloat16"], f"{name} datasheet, dense bf16", name)
    if device == "cuda":
        try:
            name, total = _visible_gpu()
        except Exception as exc:  # noqa: BLE001 - pynvml's errors (no driver, no library) share no base class
            from harness.errors import UserError

            if not (gpu_memory or runner_limit):  # a plan made on a laptop: nothing to read the GPU from
                raise UserError(f"the suite trains on cuda, but no GPU can be read here ({type(exc).__name__}); "
                                f"name the GPU to plan for with --gpu KIND ({', '.join(GPUS)})") from None
            return Target("cuda", gpu_memory or runner_limit, None,
                          f"no GPU visible here ({type(exc).__name__}) and none named with --gpu: no peak FLOP/s, "
                          f"so no speed estimate")
        peak, source = peak_flops("cuda", name, "bfloat16")
        return Target("cuda", gpu_memory or runner_limit or total, peak, source, name)
    from harness.estimate.parts import cpu_allocator

    peak, source = peak_flops("cpu", None, "float32")
    return Target("cpu", gpu_memory or runner_limit or _available_ram(), peak, source,
                  cpu_allocator=cpu_allocator())


def _peak_for(target: Target, dtype: str) -> tuple[float | None, str]:
    """The target's dense peak at the dtype the cell trains in, as the trial's MFU reads it
    (measure.flops.peak_flops: float32 on a GPU counts as TF32 only where torch allows it); on a CPU
    the timed float32 peak for every dtype, said so."""
    if target.device == "cuda" and target.gpu_name:
        from harness.measure.flops import peak_flops

        return peak_flops("cuda", target.gpu_name, dtype)
    return target.peak_flops, target.peak_source


def _visible_gpu() -> tuple[str | None, int | None]:
    """(name, total memory) of the first GPU this process may use, from NVML: asking torch would
    create a CUDA context in the sweep process, and trial processes forked from it could not use CUDA."""
    import os

    import pynvml

    pynvml.nvmlInit()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    handle = (pynvml.nvmlDeviceGetHandleByUUID(visible) if visible.startswith("GPU-")
              else pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0))
    name = pynvml.nvmlDeviceGetName(handle)
    return (name.decode() if isinstance(name, bytes) else name), int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)


def _available_ram() -> int | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _uses_checkpointing(checkpointing: bool, method_params) -> bool:
    """The cell's acceleration.gradient_checkpointing, or QLoRA's own (peft's k-bit preparation)."""
    return bool(checkpointing or getattr(method_params, "gradient_checkpointing", False))


def predict_memory(config, head, num_labels: int, method, flat: dict, training, *, micro_batch: int,
                   seq_len: int, dtype: str, device: str, model_type: str, pure_dtype: bool = False,
                   loss: str = "model", attention: str = "sdpa",
                   gradient_checkpointing: bool = False) -> tuple[int, dict[str, int], Any]:
    """(predicted peak bytes, its parts, the simulated model) of one training step."""
    from harness.estimate.simulate import StepShape, simulate
    from harness.methods import ApplyContext

    method_params, values = method.split(flat)
    optim = values.get("optim", training.optim)
    shape = StepShape(micro_batch, seq_len, dtype, optim, _uses_checkpointing(gradient_checkpointing, method_params),
                      attention, device, pure_dtype, loss)
    ctx = ApplyContext(head.peft_task_type, (), model_type, training.max_steps, device)
    sim = simulate(config, head, num_labels, method, method_params, ctx, shape)
    parts = {"weights": sim.peak["parameters"], "quantization_constants": 0}
    if sim.quantized:
        bits = 4 if method.name == "qlora" else 8
        double = bool(getattr(method_params, "double_quant", False))
        dtype_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}
        compute = "bfloat16" if device == "cuda" else "float32"
        compute = getattr(method_params, "compute_dtype", "auto").replace("auto", compute)
        for n_in, n_out in sim.quantized.values():
            packed, constants = quantized_weight_bytes(n_in * n_out, bits, double, n_out)
            parts["weights"] += packed - n_in * n_out * dtype_bytes[compute]
            parts["quantization_constants"] += constants
    opt, paged = optimizer_bytes(optim, sim.trainable, sim.peak["optimizer"])
    parts["gradients"] = sim.peak["gradients"]
    parts["optimizer_states_paged" if paged and device == "cuda" else "optimizer_states"] = opt
    parts["activations"] = sim.peak["activations"]
    return _counted(parts), parts, sim.model


def _counted(parts: dict[str, int]) -> int:
    """The peak the parts add up to: paged optimizer states left out (bitsandbytes pages them to host memory)."""
    return sum(v for k, v in parts.items() if k != "optimizer_states_paged")


MAX_PROCESSES = 64  # the most ranks min_processes looks at (8 machines of 8 GPUs)


def shard_units(model) -> dict[str, int]:
    """Bytes of what FSDP gathers whole on each rank: the root's own parameters (embeddings, final norm and
    head: accelerate wraps the model's _no_split_modules, and the root keeps its parameters gathered from
    its forward to the end of its backward) and the largest wrapped unit (a decoder layer), each with its
    trainable share."""
    names = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or ())
    inside: set[int] = set()
    unit, unit_trainable = 0, 0
    for module in model.modules():
        if type(module).__name__ in names and id(module) not in inside:
            params = list(module.parameters())
            inside |= {id(p) for p in params}
            size = sum(p.numel() * p.element_size() for p in params)
            if size > unit:
                unit, unit_trainable = size, sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    root = [p for p in model.parameters() if id(p) not in inside]
    return {"root": sum(p.numel() * p.element_size() for p in root),
            "root_trainable": sum(p.numel() * p.element_size() for p in root if p.requires_grad),
            "unit": unit, "unit_trainable": unit_trainable,
            "trainable": sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)}


def per_rank(parts: dict[str, int], processes: int, strategy: str, units: dict[str, int]) -> dict[str, int]:
    """One rank's parts of a step over `processes` ranks, from the one-device parts (activations are per
    rank already: the micro-batch is per rank).
    - fsdp: weights, quantization constants, gradients and optimizer states divided by N; gathered whole
      on top: the root's parameters, the largest unit twice (the one computing and the one prefetched),
      and where gradients are held at the peak, the root's and one unit's unsharded gradients before
      their reduce-scatter;
    - ddp: every rank holds it all, plus DDP's gradient buckets (a second copy of the trainable
      gradients: the Trainer keeps gradient_as_bucket_view off)."""
    out = dict(parts)
    if processes == 1:
        return out
    if strategy == "ddp":
        out["ddp_buckets"] = units["trainable"]
        return out
    for key in ("weights", "quantization_constants", "gradients", "optimizer_states", "optimizer_states_paged"):
        if key in out:
            out[key] = -(-out[key] // processes)
    gathered = units["root"] + 2 * units["unit"]
    if parts.get("gradients"):
        gathered += units["root_trainable"] + units["unit_trainable"]
    out["fsdp_gathered"] = gathered
    return out


def estimate(cell_id: str, method, flat: dict, training, *, config, head, num_labels: int, seq_len: int,
             dtype: str, target: Target, micro_batch: int | None = None, find_max: bool = True,
             calibration: dict | None = None, gradient_checkpointing: bool = False, pairs: bool = False,
             holds_reference: bool = False, processes: int = 1, strategy: str = "ddp") -> CellEstimate:
    """One cell's estimate. micro_batch None: the training's own (auto: 1 to start from). pairs: each
    example is two sequences in one batch (preference: chosen and rejected); holds_reference: a frozen
    reference model sits beside the policy (DPO), a copy of the weights unless the method is a peft
    adapter (switched off to score the reference). processes, strategy: the prediction is one rank's of a
    trial over that many (per_rank); min_processes says how many FSDP ranks it takes to fit."""
    from harness.measure.flops import flops_per_token, peak_devices

    micro = micro_batch or (training.micro_batch_size if isinstance(training.micro_batch_size, int)
                            else max(training.batch_size // getattr(training, "ranks", 1), 1)
                            if training.micro_batch_size is None else 1)  # per rank
    model_type = getattr(config, "model_type", "")
    factor = (calibration or {}).get("activation_factor", {}).get(method.name)
    offset = (calibration or {}).get("offset_bytes", {}).get(method.name, 0)

    def one_device(micro_batch: int):
        """The step on one device (calibrated); on_ranks divides it."""
        peak, parts, model = predict_memory(config, head, num_labels, method, flat, training,
                                            micro_batch=micro_batch * (2 if pairs else 1),
                                            seq_len=seq_len, dtype=dtype, device=target.device, model_type=model_type,
                                            gradient_checkpointing=gradient_checkpointing)
        if holds_reference and not is_peft(model):
            parts["reference_model"] = parts["weights"]
            peak += parts["weights"]
        if factor:  # calibrated from records: the activations this method was measured to need
            scaled = int(parts["activations"] * factor)
            peak, parts["activations"] = peak + scaled - parts["activations"], scaled
            parts["calibration_offset"] = int(offset)
            peak += int(offset)
        return peak, parts, model

    def on_ranks(step, n: int, strategy: str = strategy):
        """One rank's step of n (per_rank); the one-device step itself where n is 1. per_rank leaves the
        activations, which calibration scaled, as they are."""
        peak, parts, model = step
        if n == 1:
            return peak, dict(parts), model
        sharded = per_rank(parts, n, strategy, shard_units(model))
        return peak + _counted(sharded) - _counted(parts), sharded, model

    steps: dict[int, tuple] = {}

    def step_at(m: int):
        """The one-device step at micro-batch m, simulated once per estimate."""
        if m not in steps:
            steps[m] = one_device(m)
        return steps[m]

    def step_for(n: int):
        """The one-device step at the micro-batch a rank of n trains on: this trial's own where n is its
        number of ranks or the suite sets micro_batch_size, else (unset) the effective batch split over n."""
        unset = n != processes and training.micro_batch_size is None
        return step_at(max(training.batch_size // n, 1) if unset else micro)

    context = CUDA_CONTEXT_BYTES if target.device == "cuda" else 0
    alloc = None if context else target.cpu_allocator

    def resident(peak: float, parts: dict, n: int, strategy: str):
        """What the device holds beyond torch's tensors: on a CPU the measured peak is resident memory (see
        parts.CpuAllocator), and a CPU FSDP rank also keeps the whole weights it was forked with resident:
        fully_shard frees them, but glibc keeps their heap blocks (docs/benchmarks.md); a GPU rank's shard
        is its only copy."""
        parts = dict(parts)
        if alloc is not None:
            # calibration was fitted against predictions that held this allocator part already: it scales
            # the simulated activations only, so the allocator part stays the uncalibrated one's
            activations = parts["activations"] / factor if factor else parts["activations"]
            grown = parts["gradients"] + parts.get("optimizer_states", 0) + activations
            parts["cpu_runtime"] = alloc.runtime_bytes
            parts["cpu_allocator"] = int((alloc.factor - 1) * grown)
            peak += parts["cpu_runtime"] + parts["cpu_allocator"]
        if n > 1 and strategy == "fsdp" and target.device == "cpu":
            parts["inherited_weights"] = parts["weights"] * n  # each rank's weights are 1/n of them
            peak += parts["inherited_weights"]
        return peak, parts

    peak, parts, model = on_ranks(step_for(processes), processes)
    assumptions = [f"sequences of {seq_len} tokens, micro-batch {micro}",
                   "peak = weights + quantization constants + gradients + optimizer states + activations at "
                   "the step's peak (torch's allocated bytes)"]
    if pairs:
        assumptions.append("preference pairs: chosen and rejected answers in one batch (2 x micro-batch sequences)")
    if "reference_model" in parts:
        assumptions.append("a frozen reference copy of the weights beside the policy (in weights; its no-grad forward's "
                           "activations not counted)")
    if factor:
        assumptions.append(f"activations x {factor:.3f}{f' + {offset / 2**20:.0f} MiB' if offset else ''} "
                           f"(calibrated for {method.name} from measured records)")
    per_example = max((on_ranks(step_at(2 * micro), processes)[0] - peak) / micro, 1.0) if find_max else None
    if context:
        parts["cuda_context"] = context
        assumptions.append("CUDA context 512 MiB, counted for fitting only")
    peak, parts = resident(peak, parts, processes, strategy)
    if alloc is not None:
        if per_example is not None:
            per_example *= alloc.factor
        assumptions.append(f"CPU resident memory = tensors + {alloc.runtime_bytes / 2**20:.0f} MiB runtime + "
                           f"{alloc.factor - 1:.0%} of what training allocates (allocator model fitted on this host)")
    if "inherited_weights" in parts:
        assumptions.append("CPU: each rank also keeps the whole weights it was forked with (inherited_weights)")
    if processes > 1:
        assumptions.append(
            f"one rank of {processes} ({strategy}): " + (
                "weights, gradients and optimizer states sharded by N; the root's parameters and two decoder "
                "layers gathered whole (fsdp_gathered)" if strategy == "fsdp" else
                "the whole model on every rank, plus DDP's gradient buckets (a copy of the trainable gradients)"))
    limit = target.memory_limit_bytes
    fits = None if limit is None else peak + context <= limit
    min_processes = None
    if limit is not None:  # the fewest FSDP ranks whose rank fits, each at its own micro-batch, counted as above
        min_processes, n = 0, 1
        while n <= MAX_PROCESSES:
            if resident(*on_ranks(step_for(n), n, "fsdp")[:2], n, "fsdp")[0] + context <= limit:
                min_processes = n
                break
            n *= 2
    max_micro = None
    if limit is not None and per_example is not None:
        fixed = peak - per_example * micro
        max_micro = max(int((limit - context - fixed) // per_example), 0)
    mfu = (calibration or {}).get("mfu", {}).get(method.name) or ASSUMED_MFU[target.device]
    tokens_per_s = None
    peak_flops, peak_source = _peak_for(target, dtype)
    if peak_flops:
        per_token = flops_per_token(model, float(seq_len)).per_token
        devices = peak_devices(target.device, processes)
        tokens_per_s = devices * mfu * peak_flops / per_token if per_token else None
        assumptions.append(f"throughput at {mfu:.0%} of {peak_source}" + (
            f", over {processes} ranks' devices" if devices > 1 else
            f", shared by the {processes} ranks (one host's cores)" if processes > 1 else ""))
    return CellEstimate(cell_id, method.name, micro, seq_len, target.device, int(peak), parts, fits, max_micro,
                        tokens_per_s, limit, assumptions, processes, strategy, min_processes)

