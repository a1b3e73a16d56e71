"""One trial, top to bottom like a recipe: load the model and apply the method, train with the HF
Trainer (validation scored every eval_every_steps), evaluate on the test split, return the record.
Runs inside the trial process. `setup_model` and `phase_memory` are the trial core the bench's bare
loop shares, so both measure the same thing the same way."""

from __future__ import annotations

import copy
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from harness.measure.memory import PhaseMemory
from harness.measure.speed import StepTimer, flops_per_token, non_embedding_params, peak_flops
from harness.methods import ApplyContext
from harness.methods.artifacts import save_trained, trainable_state_bytes
from harness.records.schema import Energy, Memory, Throughput, Timing, TrialRecord
from harness.runner.jobs import TrialJob
from harness.runner.prepare import Prepared
from harness.runner.trainer import Pruned, callbacks, trainer_class, training_args


@dataclass
class TrialHooks:
    """How a running trial talks to the sweep: step progress, and the pruning question
    (the sweep process owns the Optuna study; a trial process only asks it)."""

    progress: Callable[[dict], None]
    should_prune: Callable[[float, int], bool]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def apply_context(job: TrialJob, prepared: Prepared) -> ApplyContext:
    return ApplyContext(task_type=prepared.head.peft_task_type, head_names=prepared.head_names,
                        model_type=prepared.model_type, max_steps=job.training.max_steps, device=job.device)


def phase_memory(job: TrialJob) -> PhaseMemory:
    return PhaseMemory(job.device, job.measure.nvml_period_ms / 1000.0, job.measure.phase_peaks)


def _release(model) -> None:
    """In a trial process that loads its own (quantized) model, drop this process's view of the
    shared full-precision base, so its pages do not count in the trial's peak memory. The sweep
    process keeps its copy: after fork the two address spaces are separate."""
    import torch

    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data = torch.empty(0, dtype=tensor.dtype)


def _reinit_head(model, head_names: tuple[str, ...]) -> None:
    """The base model was loaded once with one random head; each seed gets its own head init."""
    for name in head_names:
        head = getattr(model, name, None)
        if head is not None:
            for module in head.modules():
                model._init_weights(module)


def setup_model(job: TrialJob, prepared: Prepared):
    """The model this trial trains, on its device: the shared base (copied when inline) or the
    method's own quantized load, its task head re-initialised from this trial's seed, the method
    applied. Returns (model, trainable parameter count)."""
    method, ctx = job.cell.method, apply_context(job, prepared)
    if method.load_kwargs is not None:
        extra = method.load_kwargs(job.method_params, ctx)
        if job.device == "cuda":
            extra["device_map"] = {"": 0}
        if not job.copy_model:
            _release(prepared.model)
        model = prepared.load_variant(**extra)
    else:
        model = copy.deepcopy(prepared.model) if job.copy_model else prepared.model
    _reinit_head(model, prepared.head_names)
    model = method.build(model, job.method_params, ctx)
    if not getattr(model, "is_loaded_in_4bit", False) and not getattr(model, "is_loaded_in_8bit", False):
        model.to(job.device)  # quantized models were placed on the device while loading
    return model, sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_trial(job: TrialJob, prepared: Prepared, hooks: TrialHooks) -> TrialRecord:
    from transformers import set_seed

    timing, history, validation_s = Timing(), [], []
    memory, steps = phase_memory(job), StepTimer(cuda=job.device == "cuda")
    family, batch, head = prepared.family, job.training.eval_batch_size, prepared.head.name
    record = dict(job.record_base, trial_number=job.trial_number, seed=job.seed, params=job.params,
                  data_fingerprint=prepared.data_fingerprint, total_params=prepared.total_params,
                  validation_source=prepared.validation_source,
                  train_test_duplicates=prepared.train_test_duplicates, started_at=now())
    throughput = Throughput()
    try:
        if job.cell.method.baseline == "trivial":  # no model: the task's trivial predictor
            record["metrics"], record["metric_errors"] = _errors_apart(family.trivial(prepared.splits, "test"))
            record.update(validation_metrics=_drop_rates(family.trivial(prepared.splits, "validation")),
                          status="complete", trainable_params=0)
            raise _Done

        # load: the model, with the method applied
        set_seed(job.seed)
        t0 = time.perf_counter()
        memory.start("load")
        model, record["trainable_params"] = setup_model(job, prepared)
        memory.stop("load")
        timing.load_s = time.perf_counter() - t0

        def validate() -> dict[str, float]:
            return family.evaluate(model, prepared.tokenizer, prepared.data["validation"], batch, job.device, head)

        # train, scoring the validation split every eval_every_steps (pruning, curves)
        if job.cell.method.trains:
            throughput = _train(job, prepared, model, hooks, history, validation_s, memory, steps, timing, record,
                                validate)

        # validate: what every choice reads (the in-loop score of the last step where there is one)
        t1 = time.perf_counter()
        key = "validation_" + job.cell.metric
        last = next((h for h in reversed(history) if key in h), None)
        if last is not None and last["step"] == throughput.train_steps:
            record["validation_metrics"] = {k.removeprefix("validation_"): v for k, v in last.items() if k != "step"}
        else:
            record["validation_metrics"] = _drop_rates(validate())
        timing.validation_s = time.perf_counter() - t1 + sum(validation_s)

        # test: what is reported, read by no choice
        t2 = time.perf_counter()
        memory.start("eval")
        test = prepared.data["test"]
        record["metrics"], record["metric_errors"] = _errors_apart(
            family.evaluate(model, prepared.tokenizer, test, batch, job.device, head))
        gen_rate = record["metrics"].pop("generation_tokens_per_s", None)
        if gen_rate is not None:
            throughput.generation_tokens_per_s = gen_rate
        memory.stop("eval")
        timing.eval_s = time.perf_counter() - t2
        throughput.eval_samples_per_s = len(test) / timing.eval_s if timing.eval_s else 0.0
        record["artifact_bytes"] = trainable_state_bytes(model)
        if job.artifact_dir and job.cell.method.trains:
            record["artifact_bytes"] = save_trained(model, Path(job.artifact_dir))
            record["artifact_path"] = job.artifact_dir
        record.update(status="complete", throughput=throughput)
    except _Done:
        pass
    except Pruned as exc:
        record.update(status="pruned", reason=str(exc))
    except (MemoryError, _oom_type()) as exc:
        record.update(status="oom", reason=f"out of memory at batch size {job.training.batch_size}: "
                                           f"{type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # any other failure is a record, never a crashed sweep
        frames = traceback.format_exception(exc)
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}\n{''.join(frames[-3:])}"[:4000])
    memory.close()
    record.update(history=history, timing=timing, finished_at=now(),
                  memory=Memory(source=memory.source, peak_bytes=memory.peak_bytes, by_phase_peak_bytes=memory.peaks,
                                baseline_bytes=memory.baseline_bytes, gpu=memory.gpu))
    return TrialRecord.model_validate(record)


class _Done(Exception):
    """A baseline that needs no model has its record."""


def _drop_rates(metrics: dict[str, float]) -> dict[str, float]:
    """The validation scores a choice reads: no rates, no standard errors."""
    return {k: v for k, v in metrics.items() if k != "generation_tokens_per_s" and not k.startswith("se:")}


def _errors_apart(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, their standard errors) from an evaluation's "se:<metric>" entries."""
    errors = {k.removeprefix("se:"): v for k, v in metrics.items() if k.startswith("se:")}
    return {k: v for k, v in metrics.items() if not k.startswith("se:")}, errors


def _train(job, prepared, model, hooks, history, validation_s, memory, steps, timing, record, validate) -> Throughput:
    """The Trainer's loop over the training split; validation's time is kept out of train time."""
    def scored() -> dict[str, float]:
        return _drop_rates(validate())

    with tempfile.TemporaryDirectory(prefix="harness-trial-") as out_dir:
        trainer = trainer_class()(model=model, args=training_args(job, out_dir),
                                  train_dataset=prepared.data["train"],
                                  data_collator=prepared.head.collator(prepared.tokenizer),
                                  callbacks=callbacks(job, scored, hooks, history, validation_s, steps))
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # logs go into the record's history, not stdout
        memory.start("train")
        energy_start = memory.sampler.energy_mj() if memory.sampler else None
        result = trainer.train()
        energy_end = memory.sampler.energy_mj() if memory.sampler else None
        memory.stop("train")
    timing.train_s = float(result.metrics["train_runtime"]) - sum(validation_s)
    throughput = _throughput(model, trainer, job, timing.train_s, steps, record["trainable_params"])
    record["energy"] = _energy(memory, energy_start, energy_end, throughput.train_tokens, timing.train_s,
                               job.measure.price_per_gpu_hour)
    return throughput


def _throughput(model, trainer, job: TrialJob, train_s: float, steps: StepTimer, trainable: int) -> Throughput:
    tokens = int(trainer.state.num_input_tokens_seen)
    samples = trainer.state.global_step * job.training.batch_size * job.training.gradient_accumulation_steps
    config = getattr(model, "config", None)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    d_model = int(getattr(config, "hidden_size", 0) or 0)
    per_token = flops_per_token(non_embedding_params(model), trainable, layers, d_model, tokens / max(samples, 1))
    achieved = per_token * tokens / train_s if train_s else 0.0
    gpus = job.record_base["environment"].get("gpus") or []
    peak = peak_flops(gpus[0]) if job.device == "cuda" and gpus else None
    return Throughput(train_tokens=tokens, train_steps=int(trainer.state.global_step),
                      train_tokens_per_s=tokens / train_s if train_s else 0.0,
                      train_samples_per_s=samples / train_s if train_s else 0.0,
                      median_step_s=steps.median_after_warmup(), flops_per_token=per_token,
                      achieved_tflops=achieved / 1e12, mfu=achieved / peak if peak else None)


def _energy(memory: PhaseMemory, start_mj: int | None, end_mj: int | None, tokens: int, train_s: float,
            price: float | None) -> Energy:
    energy = Energy()
    if start_mj is not None and end_mj is not None:
        joules = (end_mj - start_mj) / 1000.0
        energy = Energy(source="nvmlDeviceGetTotalEnergyConsumption (whole GPU, train phase)", train_joules=joules,
                        joules_per_1k_tokens=1000.0 * joules / tokens if tokens else None)
    if price is not None and memory.device == "cuda":
        energy.cost_usd = price * train_s / 3600.0
    return energy


def _oom_type() -> type:
    import torch

    return getattr(torch, "OutOfMemoryError", MemoryError)
