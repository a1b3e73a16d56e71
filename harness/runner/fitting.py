"""Fitting a trial to its device: memory and speed predicted before it runs (harness estimate), with
micro_batch_size: auto resolved to the largest micro-batch predicted to fit and a cell predicted not
to fit skipped; and, where the suite asks, the out-of-memory back-off that halves the micro-batch
(the effective batch, and so the result, stay)."""

from __future__ import annotations

import json

from harness.estimate import estimate, target_for

# training values that change no byte of memory: a cell's prediction is made once for all of them
NOT_MEMORY = ("learning_rate", "weight_decay", "warmup_ratio")


class Fitting:
    """One worker's predictions, made once per cell and memory-relevant parameters."""

    def __init__(self, device: str, memory_limit):
        self.estimates: dict[tuple, object] = {}
        self.longest: dict[tuple, int] = {}  # (cell, max_length) -> the sequence length its predictions assume
        self.errors: dict[str, dict] = {}  # cell -> why it has no prediction
        # where the estimate fits cells (the device, its memory), read before any claim: the CPU's
        # allocator probe takes seconds once per host, with no heartbeat running
        self.target, self.target_error = None, ""
        self.devices: int | None = None  # the worker's lease pool (--gpus), set by the worker
        try:
            self.target = target_for(device, None, None, memory_limit)
        except Exception as exc:  # noqa: BLE001 - no estimate then; trials run as they would have
            self.target_error = f"{type(exc).__name__}: {exc}"

    def predict(self, job, prepared):
        """(the job, its prediction): micro_batch_size: auto resolved to the largest micro-batch
        predicted to fit (a divisor of the effective batch, which accumulation keeps). No prediction
        (None) where the estimate cannot simulate this model: the trial runs as it would have, and its
        record says why. Baseline rows train nothing and get none."""
        if job.cell.processes == "auto" and job.cell.method.trains:
            job = job.with_ranks(self.fewest_ranks(job, prepared))
        if not job.cell.method.trains:
            return (job.with_micro_batch(job.training.batch_size) if job.training.micro_batch_size == "auto"
                    else job), None
        if job.training.micro_batch_size != "auto":
            return job, self.estimate(job, prepared, job.training.micro_batch)
        first = self.estimate(job, prepared, None)  # at micro-batch 1, with the largest that fits
        if first is None:
            return job.with_micro_batch(job.training.batch_size), None
        batch = job.training.batch_size
        micro = max((m for m in range(1, batch + 1) if batch % m == 0 and m <= (first.max_micro_batch or 0)),
                    default=1)
        chosen = self.estimate(job, prepared, micro) if micro != first.micro_batch else first
        if chosen is not None:
            chosen.max_micro_batch = first.max_micro_batch
        return job.with_micro_batch(micro), chosen or first

    def available_devices(self) -> int:
        """The devices a trial of this worker may take: its lease pool (--gpus), else the GPUs visible to it,
        else 1 (a CPU trial's ranks share the host's cores; auto never splits one there)."""
        if self.devices:
            return self.devices
        if self.target is not None and self.target.device == "cuda":
            import os

            visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
            if visible:
                return len(visible)
            try:
                import pynvml

                pynvml.nvmlInit()
                return int(pynvml.nvmlDeviceGetCount())
            except Exception:  # noqa: BLE001 - no NVML: one device
                return 1
        return 1

    def fewest_ranks(self, job, prepared) -> int:
        """processes: auto: the fewest FSDP ranks the estimate says the method fits on, at most the devices
        this worker has (more than it has: all of them, and the fit check then skips the trial)."""
        have = self.available_devices()
        micro = job.training.micro_batch_size  # unset: the batch split over each number of ranks tried
        one = self.estimate(job.with_ranks(1), prepared, micro if isinstance(micro, int) else None)
        if one is None or one.min_processes is None or one.min_processes == 1:
            return 1
        return min(one.min_processes or have, have)

    def estimate(self, job, prepared, micro: int | None):
        """The cell's prediction at this micro-batch (None: at the training's own, 1 where it is auto, with
        the largest that fits); None where it cannot be made (the reason is kept per cell)."""
        key = (job.cell.id, job.cell.model.max_length, micro, job.ranks, json.dumps({k: v for k, v in job.params.items()
                                               if k not in NOT_MEMORY and k != "micro_batch_size"},
                                              sort_keys=True, default=str))
        if key not in self.estimates:
            try:
                if self.target is None:
                    raise RuntimeError(f"the device's memory and peak could not be read: {self.target_error}")
                length_key = (job.cell.id, job.cell.model.max_length)  # sha may shorten it at a rung
                if length_key not in self.longest:  # a walk over the training split: once per cell and length
                    self.longest[length_key] = longest_sequence(prepared, job)
                self.estimates[key] = estimate(
                    job.cell.id, job.cell.method, job.params, job.training, config=prepared.model.config,
                    head=prepared.head, num_labels=len(prepared.labels), seq_len=self.longest[length_key],
                    dtype=job.cell.model.dtype, target=self.target, micro_batch=micro, find_max=micro is None,
                    gradient_checkpointing=job.acceleration.gradient_checkpointing,
                    processes=job.ranks, strategy=job.strategy if job.cell.processes != "auto" else "fsdp")
            except Exception as exc:  # noqa: BLE001 - an estimate never stops a trial
                self.estimates[key] = None
                self.errors[job.cell.id] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        return self.estimates[key]

    def recorded(self, job, predicted) -> dict | None:
        """What the record keeps: the prediction, or why the cell has none."""
        return predicted.to_json() if predicted is not None else self.errors.get(job.cell.id)


def backed_off(record, job, backoff: bool):
    """The job to run again where a trial ran out of memory loading or training and the suite asks
    (runner.oom_backoff): the same trial at half the micro-batch (None: no second attempt)."""
    micro = job.training.micro_batch
    if record.status == "oom" and record.failed_phase in ("load", "train") and backoff and micro > 1:
        return job.with_micro_batch(micro // 2)
    return None


def longest_sequence(prepared, job) -> int:
    """The sequence length a prediction assumes in a sweep: the longest training example as tokenized
    (a batch is padded to its longest, and some batch holds the longest one), at most max_length.
    `harness estimate`, which reads no data, assumes max_length."""
    try:
        longest = max(len(ids) for ids in prepared.data["train"]["input_ids"])
    except (KeyError, TypeError, ValueError):
        return job.cell.model.max_length
    return max(min(longest, job.cell.model.max_length), 1)


def skipped_reason(predicted) -> str:
    need = predicted.predicted_peak_bytes + predicted.parts.get("cuda_context", 0)
    return (f"predicted not to fit: {_size(need)} needed at micro-batch {predicted.micro_batch} x "
            f"{predicted.seq_len} tokens, {_size(predicted.memory_limit_bytes)} available "
            f"(harness estimate; set runner.memory_limit, or training.micro_batch_size: auto"
            + (f"; FSDP fits at {predicted.min_processes} ranks: runner.distributed {{processes: auto, strategy: "
               f"fsdp}} with --gpus" if (predicted.min_processes or 0) > max(predicted.processes, 1) else "") + ")")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
