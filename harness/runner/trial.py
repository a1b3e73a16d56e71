"""One trial, top to bottom like a recipe: take the base model, apply the method, train with the
HF Trainer, evaluate on the test split, and return a TrialRecord. Runs inside the trial process."""

from __future__ import annotations

import copy
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from harness.measure.memory import PhaseMemory
from harness.methods.artifacts import save_trained, trainable_state_bytes
from harness.measure.speed import StepTimer, flops_per_token, non_embedding_params, peak_flops
from harness.methods import ApplyContext
from harness.records.schema import Energy, Memory, Throughput, Timing, TrialRecord
from harness.runner.plan import Cell
from harness.runner.prepare import Prepared
from harness.tasks import TASKS


@dataclass
class TrialJob:
    cell: Cell
    params: dict[str, Any]  # fixed + sampled: everything this trial trains with
    sampled: dict[str, Any]  # only what Optuna chose
    trial_number: int
    seed: int
    record_base: dict[str, Any]  # suite name/hash, objective, environment, config
    training: Any  # TrainingSpec
    measure: Any  # MeasureSpec
    device: str
    copy_model: bool  # inline trials must not touch the shared base model
    artifact_dir: str | None = None  # keep the trained adapter here (output.keep_adapters)

    @property
    def method_params(self):
        """The method's own parameters, typed (its declaration in harness/methods)."""
        return self.cell.method.split(self.params)[0]


@dataclass
class TrialHooks:
    """How a running trial talks to the sweep: step progress, and the pruning question
    (the sweep process owns the Optuna study; a trial process only asks it)."""

    progress: Callable[[dict], None]
    should_prune: Callable[[float, int], bool]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Pruned(Exception):
    pass


def preload() -> None:
    """Import, in the sweep process, everything a trial touches, so forked trials start warm."""
    import peft  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch.optim  # noqa: F401
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments  # noqa: F401

    _cache_lomo_check()


def _cache_lomo_check() -> None:
    """accelerate's AcceleratedOptimizer.step asks is_lomo_available() twice per optimizer step,
    and each answer is an importlib find_spec scan of sys.path: ~0.5 ms of file-system lookups per
    step, 5% of a small model's step in `harness bench`. Whether lomo_optim is installed cannot
    change during a sweep, so the answer is computed once."""
    import functools

    import accelerate.optimizer

    check = accelerate.optimizer.is_lomo_available
    if not hasattr(check, "cache_info"):
        accelerate.optimizer.is_lomo_available = functools.lru_cache(maxsize=None)(check)


def _callbacks(job: TrialJob, hooks: TrialHooks, history: list, eval_times: list, steps: StepTimer):
    from transformers import TrainerCallback

    metric = "eval_" + job.record_base["objective_metric"]

    class Measure(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            steps.begin()

        def on_optimizer_step(self, args, state, control, model=None, **kw):
            if job.cell.method.on_optimizer_step is not None:
                job.cell.method.on_optimizer_step(model, state.global_step)

        def on_step_end(self, args, state, control, **kw):
            steps.end()
            hooks.progress({"step": state.global_step, "max_steps": state.max_steps})

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                history.append({"step": state.global_step, "loss": float(logs["loss"])})

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            # A ten-line pruning hook: optuna-integration's callback would add a package for this.
            metrics = metrics or {}
            eval_times.append(float(metrics.get("eval_runtime", 0.0)))
            history.append({"step": state.global_step, **{k: float(v) for k, v in metrics.items()
                                                          if isinstance(v, (int, float))}})
            if metric in metrics and hooks.should_prune(float(metrics[metric]), state.global_step):
                raise _Pruned(f"pruned at step {state.global_step}: validation {metric}={metrics[metric]:.4f}")

    return [Measure()]


def _reinit_head(model, head_names: tuple[str, ...]) -> None:
    """The base model was loaded once with one random head; each seed gets its own head init."""
    for name in head_names:
        head = getattr(model, name, None)
        if head is not None:
            for module in head.modules():
                model._init_weights(module)


def apply_context(job: TrialJob, prepared: Prepared) -> ApplyContext:
    return ApplyContext(task_type="SEQ_CLS" if prepared.head == "sequence_classification" else "CAUSAL_LM",
                        head_names=prepared.head_names, model_type=prepared.model_type,
                        max_steps=job.training.max_steps, device=job.device)


def _release(model) -> None:
    """In a trial process that loads its own (quantized) model, drop this process's view of the
    shared full-precision base, so its pages do not count in the trial's peak memory. The sweep
    process keeps its copy: after fork the two address spaces are separate."""
    import torch

    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data = torch.empty(0, dtype=tensor.dtype)


def base_model(job: TrialJob, prepared: Prepared):
    """The model the method starts from: the shared base (copied when inline), or the method's own
    quantized load; its task head re-initialized from this trial's seed."""
    method = job.cell.method
    if method.load_kwargs is not None:
        extra = method.load_kwargs(job.method_params, apply_context(job, prepared))
        if job.device == "cuda":
            extra["device_map"] = {"": 0}
        if not job.copy_model:
            _release(prepared.model)
        model = prepared.load_variant(**extra)
    else:
        model = copy.deepcopy(prepared.model) if job.copy_model else prepared.model
    _reinit_head(model, prepared.head_names)
    return model


def trainer_class():
    from transformers import Trainer

    class HarnessTrainer(Trainer):
        """The HF Trainer without the per-step walks over every module and parameter that a
        single-device run does not need. Written by hand because neither transformers nor accelerate
        offers a switch for them, and on a small model they cost 10-25% of each step in
        `harness bench` (model.train() recursing into every module, model.zero_grad() and gradient
        clipping iterating model.parameters(), floating_point_ops counting parameters). Each shortcut
        computes the same thing over a list cached once per trial:
        - floating_point_ops: the non-embedding parameter total, counted once;
        - gradient clipping: accelerate's clip_grad_norm_ (so fp16 unscaling is kept) over the
          parameters that require grad, instead of all of them (frozen ones have no grad to clip);
        - model.train(): skipped when every module is already in training mode;
        - model.zero_grad(): sets .grad = None on the parameters that require grad only.
        Anything distributed goes through the Trainer's own code unchanged."""

        _non_embedding_params: int | None = None
        _trainable: list | None = None

        def floating_point_ops(self, inputs) -> int:
            main = getattr(self.model, "main_input_name", "input_ids")
            if main not in inputs or not hasattr(self.model, "num_parameters"):
                return 0
            if self._non_embedding_params is None:
                self._non_embedding_params = self.model.num_parameters(exclude_embeddings=True)
            return 6 * inputs[main].numel() * self._non_embedding_params

        def _single_device(self) -> bool:
            from accelerate.utils import DistributedType

            return self.accelerator.distributed_type == DistributedType.NO and self.args.n_gpu <= 1

        def _clip_grad_norm(self, model):
            if self._trainable is None:  # not a single-device run (see train)
                return super()._clip_grad_norm(model)
            return self.accelerator.clip_grad_norm_(self._trainable, self.args.max_grad_norm)

        def train(self, *args, **kwargs):
            if not self._single_device():
                return super().train(*args, **kwargs)
            model = self.model
            modules = list(model.modules())
            trainable = self._trainable = [p for p in model.parameters() if p.requires_grad]
            full_train, full_zero_grad = model.train, model.zero_grad

            def train_mode(mode: bool = True):
                if mode and all(m.training for m in modules):
                    return model
                return full_train(mode)

            def zero_grad(set_to_none: bool = True) -> None:
                if not set_to_none:
                    return full_zero_grad(set_to_none)
                for p in trainable:
                    p.grad = None

            # Instance attributes shadow the class methods for this training run only; model.eval()
            # calls self.train(False), which lands in train_mode and so keeps the cache honest.
            model.train, model.zero_grad = train_mode, zero_grad
            try:
                return super().train(*args, **kwargs)
            finally:
                del model.train, model.zero_grad

    return HarnessTrainer


def collator(prepared: Prepared):
    """Pads a batch; for causal LMs the labels too, with -100 so padding adds nothing to the loss."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

    if prepared.head == "causal_lm":
        return DataCollatorForSeq2Seq(prepared.tokenizer, padding=True, label_pad_token_id=-100)
    return DataCollatorWithPadding(prepared.tokenizer)


def _training_args(job: TrialJob, out_dir: str):
    from transformers import TrainingArguments

    t, p = job.training, job.params
    return TrainingArguments(
        output_dir=out_dir, max_steps=t.max_steps, per_device_train_batch_size=int(p["batch_size"]),
        gradient_accumulation_steps=int(p["gradient_accumulation_steps"]),
        learning_rate=float(p["learning_rate"]), weight_decay=float(p["weight_decay"]),
        warmup_steps=float(p["warmup_ratio"]), lr_scheduler_type=t.lr_scheduler,
        per_device_eval_batch_size=t.eval_batch_size,
        eval_strategy="steps" if t.eval_every_steps else "no", eval_steps=t.eval_every_steps,
        logging_steps=max(1, t.max_steps // 10), save_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=job.device == "cpu", seed=job.seed, data_seed=job.seed,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
        gradient_checkpointing=t.gradient_checkpointing, optim=str(p["optim"]),
    )


def _throughput(model, trainer, job: TrialJob, train_s: float, steps: StepTimer, trainable: int) -> Throughput:
    tokens = int(trainer.state.num_input_tokens_seen)
    samples = trainer.state.global_step * int(job.params["batch_size"]) * int(job.params["gradient_accumulation_steps"])
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


def run_trial(job: TrialJob, prepared: Prepared, hooks: TrialHooks) -> TrialRecord:
    timing = Timing()
    memory = PhaseMemory(job.device, job.measure.nvml_period_ms / 1000.0, job.measure.phase_peaks)
    history: list[dict] = []
    eval_times: list[float] = []
    steps = StepTimer(cuda=job.device == "cuda")
    record = dict(job.record_base, trial_number=job.trial_number, seed=job.seed, params=job.params,
                  data_fingerprint=prepared.data_fingerprint, total_params=prepared.total_params,
                  started_at=now())
    try:
        from transformers import set_seed

        family = TASKS.get(job.cell.task.kind)
        set_seed(job.seed)
        t0 = time.perf_counter()
        memory.start("load")
        model = base_model(job, prepared)
        model = job.cell.method.build(model, job.method_params, apply_context(job, prepared))
        if not getattr(model, "is_loaded_in_4bit", False) and not getattr(model, "is_loaded_in_8bit", False):
            model.to(job.device)  # quantized models were placed on the device while loading
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        record["trainable_params"] = trainable
        memory.stop("load")
        timing.load_s = time.perf_counter() - t0

        with tempfile.TemporaryDirectory(prefix="harness-trial-") as out_dir:
            trainer = trainer_class()(model=model, args=_training_args(job, out_dir),
                              train_dataset=prepared.data["train"],
                              eval_dataset=prepared.data["validation"] if job.training.eval_every_steps else None,
                              data_collator=collator(prepared),
                              compute_metrics=family.compute_metrics,
                              callbacks=_callbacks(job, hooks, history, eval_times, steps))
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # logs go into the record's history, not stdout
            memory.start("train")
            energy_start = memory.sampler.energy_mj() if memory.sampler else None
            result = trainer.train()
            energy_end = memory.sampler.energy_mj() if memory.sampler else None
            memory.stop("train")
            timing.train_s = float(result.metrics["train_runtime"]) - sum(eval_times)
            throughput = _throughput(model, trainer, job, timing.train_s, steps, trainable)
            record["energy"] = _energy(memory, energy_start, energy_end, throughput.train_tokens, timing.train_s,
                                       job.measure.price_per_gpu_hour)

        t1 = time.perf_counter()
        memory.start("eval")
        test = prepared.data["test"]
        record["metrics"] = family.evaluate(model, prepared.tokenizer, test, job.training.eval_batch_size, job.device,
                                            prepared.head)
        gen_rate = record["metrics"].pop("generation_tokens_per_s", None)
        if gen_rate is not None:
            throughput.generation_tokens_per_s = gen_rate
        memory.stop("eval")
        timing.eval_s = time.perf_counter() - t1
        throughput.eval_samples_per_s = len(test) / timing.eval_s if timing.eval_s else 0.0
        record["artifact_bytes"] = trainable_state_bytes(model)
        if job.artifact_dir:
            record["artifact_bytes"] = save_trained(model, Path(job.artifact_dir))
            record["artifact_path"] = job.artifact_dir
        record.update(status="complete", throughput=throughput)
    except _Pruned as exc:
        record.update(status="pruned", reason=str(exc))
    except (MemoryError, _oom_type()) as exc:
        record.update(status="oom", reason=f"out of memory at batch size {job.params.get('batch_size')}: "
                                           f"{type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # any other failure is a record, never a crashed sweep
        frames = traceback.format_exception(exc)
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}\n{''.join(frames[-3:])}"[:4000])
    memory.close()
    record.update(history=history, timing=timing, finished_at=now(),
                  memory=Memory(source=memory.source, peak_bytes=memory.peak_bytes, by_phase_peak_bytes=memory.peaks,
                                baseline_bytes=memory.baseline_bytes, gpu=memory.gpu))
    return TrialRecord.model_validate(record)


def _oom_type() -> type:
    import torch

    return getattr(torch, "OutOfMemoryError", MemoryError)
