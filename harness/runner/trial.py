"""One trial, top to bottom like a recipe: take the base model, apply the method, train with the
HF Trainer, evaluate on the test split, and return a TrialRecord. Runs inside the trial process."""

from __future__ import annotations

import copy
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from harness.methods import ApplyContext
from harness.measure.memory import PhaseMemory
from harness.records.schema import Memory, Throughput, Timing, TrialRecord
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
    device: str
    copy_model: bool  # inline trials must not touch the shared base model


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


def _callbacks(job: TrialJob, hooks: TrialHooks, history: list, eval_times: list):
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    metric = "eval_" + job.record_base["objective_metric"]

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
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

    return [Progress()], PrinterCallback


def _reinit_head(model, head_names: tuple[str, ...]) -> None:
    """The base model was loaded once with one random head; each seed gets its own head init."""
    for name in head_names:
        head = getattr(model, name, None)
        if head is not None:
            for module in head.modules():
                model._init_weights(module)


def run_trial(job: TrialJob, prepared: Prepared, hooks: TrialHooks) -> TrialRecord:
    started = now()
    timing, memory = Timing(), PhaseMemory(job.device)
    history: list[dict] = []
    eval_times: list[float] = []
    record = dict(job.record_base, trial_number=job.trial_number, seed=job.seed, params=job.params,
                  data_fingerprint=prepared.data_fingerprint, total_params=prepared.total_params,
                  started_at=started)
    try:
        import torch
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

        family = TASKS.get(job.cell.task.kind)
        set_seed(job.seed)
        t0 = time.perf_counter()
        memory.start("load")
        model = copy.deepcopy(prepared.model) if job.copy_model else prepared.model
        _reinit_head(model, prepared.head_names)
        ctx = ApplyContext(task_type="SEQ_CLS" if family.head == "sequence_classification" else "CAUSAL_LM",
                           head_names=prepared.head_names, model_type=prepared.model_type)
        model = job.cell.method.apply(model, job.params, ctx)
        model.to(job.device)
        record["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        memory.stop("load")
        timing.load_s = time.perf_counter() - t0

        t = job.training
        with tempfile.TemporaryDirectory(prefix="harness-trial-") as out_dir:
            args = TrainingArguments(
                output_dir=out_dir, max_steps=t.max_steps,
                per_device_train_batch_size=int(job.params["batch_size"]),
                gradient_accumulation_steps=int(job.params["gradient_accumulation_steps"]),
                learning_rate=float(job.params["learning_rate"]), weight_decay=float(job.params["weight_decay"]),
                warmup_steps=float(job.params["warmup_ratio"]), lr_scheduler_type=t.lr_scheduler,
                per_device_eval_batch_size=t.eval_batch_size,
                eval_strategy="steps" if t.eval_every_steps else "no", eval_steps=t.eval_every_steps,
                logging_steps=max(1, t.max_steps // 10), save_strategy="no", report_to="none",
                disable_tqdm=True, use_cpu=job.device == "cpu", seed=job.seed, data_seed=job.seed,
                include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
                gradient_checkpointing=t.gradient_checkpointing,
            )
            callbacks, printer = _callbacks(job, hooks, history, eval_times)
            trainer = Trainer(model=model, args=args, train_dataset=prepared.data["train"],
                              eval_dataset=prepared.data["validation"] if t.eval_every_steps else None,
                              data_collator=DataCollatorWithPadding(prepared.tokenizer),
                              compute_metrics=family.compute_metrics, callbacks=callbacks)
            trainer.remove_callback(printer)  # logs go into the record's history, not stdout
            memory.start("train")
            result = trainer.train()
            memory.stop("train")
            timing.train_s = float(result.metrics["train_runtime"]) - sum(eval_times)
            tokens = int(trainer.state.num_input_tokens_seen)
            samples = t.max_steps * int(job.params["batch_size"]) * int(job.params["gradient_accumulation_steps"])
            record["throughput"] = Throughput(
                train_tokens=tokens, train_steps=int(trainer.state.global_step),
                train_tokens_per_s=tokens / timing.train_s if timing.train_s else 0.0,
                train_samples_per_s=samples / timing.train_s if timing.train_s else 0.0)

        t1 = time.perf_counter()
        memory.start("eval")
        record["metrics"] = family.evaluate(model, prepared.tokenizer, prepared.data["test"],
                                            t.eval_batch_size, job.device)
        memory.stop("eval")
        timing.eval_s = time.perf_counter() - t1
        record.update(status="complete")
    except _Pruned as exc:
        record.update(status="pruned", reason=str(exc))
    except (MemoryError, _oom_type()) as exc:
        record.update(status="oom", reason=f"out of memory at batch size {job.params.get('batch_size')}: "
                                           f"{type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # any other failure is a record, never a crashed sweep
        frames = traceback.format_exception(exc)
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}\n{''.join(frames[-3:])}"[:4000])
    record.update(history=history, timing=timing, finished_at=now(),
                  memory=Memory(source=memory.source, peak_bytes=memory.peak_bytes,
                                by_phase_peak_bytes=memory.peaks, baseline_bytes=memory.baseline_bytes))
    return TrialRecord.model_validate(record)


def _oom_type() -> type:
    import torch

    return getattr(torch, "OutOfMemoryError", MemoryError)
