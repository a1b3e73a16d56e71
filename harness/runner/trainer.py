"""The HF Trainer as trials use it: a lean subclass, its arguments from the trial's resolved training
settings, and one callback that times steps, reports progress, scores the validation split at the
job's evaluation steps (the search's rungs, where the pruner decides, or every eval_every_steps)
and feeds AdaLoRA's rank allocation."""

from __future__ import annotations

import math
import time
from typing import Callable

from harness.runner.jobs import TrialJob
from harness.tasks.scores import Scores


class Pruned(Exception):
    """The pruner stopped the trial at a rung, judged by `metric` (the cell's rung metric)."""

    def __init__(self, message: str, step: int, value: float, metric: str):
        super().__init__(message)
        self.step, self.value, self.metric = step, value, metric


class Diverged(Exception):
    """The training loss became NaN or infinite."""


def training_args(job: TrialJob, out_dir: str, model=None):
    from transformers import TrainingArguments

    return TrainingArguments(**training_kwargs(job, out_dir, model))


def training_kwargs(job: TrialJob, out_dir: str, model=None) -> dict:
    """The trial's TrainingArguments as keywords, for TrainingArguments or a subclass of it (TRL's configs)."""
    t, a = job.training, job.acceleration
    return distributed_kwargs(job, model) | dict(
        output_dir=out_dir, max_steps=t.max_steps, per_device_train_batch_size=t.micro_batch,
        gradient_accumulation_steps=t.accumulation,
        learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        warmup_steps=float(t.warmup_ratio), lr_scheduler_type=t.lr_scheduler,
        per_device_eval_batch_size=t.eval_batch_size, eval_strategy="no",  # validation: our callback
        logging_steps=max(1, t.max_steps // 10), save_strategy="no", report_to=[n for n in job.report_to if n != "mlflow"] or "none",
        run_name=job.run_name,
        logging_nan_inf_filter=False,  # a NaN loss must reach the log, where it ends the trial as diverged
        disable_tqdm=True, use_cpu=job.device == "cpu", seed=job.seed, data_seed=job.seed,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
        optim=t.optim,
        # acceleration options, each through the Trainer's own switch (harness/spec.py AccelerationSpec)
        activation_checkpointing=a.gradient_checkpointing, torch_compile=a.compile,
        use_liger_kernel=a.kernels == "liger",
    )


def distributed_kwargs(job: TrialJob, model=None) -> dict:
    """A trial over several ranks: the Trainer's own DDP (gloo on CPU, NCCL on GPUs) or FSDP2, every
    decoder layer its own shard unit (accelerate wraps the model's _no_split_modules)."""
    if job.training.ranks == 1:
        return {}
    out = {"ddp_backend": "gloo" if job.device == "cpu" else "nccl"}
    if job.strategy == "fsdp":
        config = {"version": 2, "reshard_after_forward": True}
        units = shard_units(model) if model is not None else None
        if units:
            config["transformer_layer_cls_to_wrap"] = units
        out.update(fsdp=True, fsdp_config=config)
    return out


def shard_units(model) -> list[str] | None:
    """The layer classes FSDP wraps, where the model's _no_split_modules would not do: accelerate (1.16)
    wraps those classes and then the input embeddings as a unit of their own, so a class that holds
    the embeddings (BERT's BertEmbeddings) was wrapped twice and fully_shard failed on the already
    sharded weight ("Invariant encountered" in DeviceMesh._concatenate). Such a class is left out; its
    embeddings get accelerate's own unit and the rest of it stays with the root. None: accelerate's
    default stands."""
    names = list(getattr(model, "_no_split_modules", None) or [])
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not names or embed is None:
        return None
    modules = dict(model.named_modules())
    path = next(name for name, m in modules.items() if m is embed)
    holding = {type(m).__name__ for name, m in modules.items() if name == "" or path.startswith(name + ".")}
    present = [n for n in names if n in {type(m).__name__ for m in modules.values()}]
    units = [n for n in present if n not in holding]
    return units if len(units) < len(present) else None


def callbacks(job: TrialJob, validate: Callable[[int], Scores], hooks, history: list, validation_s: list,
              steps) -> list:
    """`validate(step)` scores the validation split; its time goes into validation_s (not train time)."""
    from transformers import TrainerCallback

    metric = job.cell.rung_metric  # search.rung_metric: a validation loss, or the objective
    # Optuna's pruners and sha's promotion (runner/halving.py) rank the values a trial reports in its
    # study's direction, the objective's: a rung metric of the other direction (a loss where accuracy is
    # maximized) is reported negated, so a lower loss ranks higher.
    sign = 1.0 if job.cell.rung_direction == job.cell.direction else -1.0
    when = set(job.eval_steps)

    class Measure(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            steps.begin()

        def on_optimizer_step(self, args, state, control, model=None, **kw):
            if job.cell.method.on_optimizer_step is not None:
                job.cell.method.on_optimizer_step(model, state.global_step)

        def on_step_end(self, args, state, control, **kw):
            steps.end()
            hooks.progress({"step": state.global_step, "max_steps": state.max_steps})
            if state.global_step in when:
                t0 = time.perf_counter()
                scores = validate(state.global_step)
                validation_s.append(time.perf_counter() - t0)
                history.append(history_entry(state.global_step, scores))
                value = scores.metrics.get(metric)
                # A ten-line pruning hook: optuna-integration's callback would add a package for this.
                if value is not None and hooks.should_prune(sign * value, state.global_step):
                    raise Pruned(f"pruned at step {state.global_step}: validation {metric}={value:.4f}",
                                 state.global_step, value, metric)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                loss = float(logs["loss"])
                if not math.isfinite(loss):  # JSON has no NaN: the history marks the step instead
                    history.append({"step": state.global_step, "loss_not_finite": 1.0})
                    raise Diverged(f"diverged: training loss {loss} at step {state.global_step}")
                history.append({"step": state.global_step, "loss": loss})

    return [Measure()]


def history_entry(step: int, scores: Scores) -> dict[str, float]:
    """An in-loop validation as the record's history keeps it: each score as validation_<metric>, its
    standard error as validation_<metric>_se where it is finite, so the report can say how far apart
    a rung's scores were (report/compute.py rung_lines)."""
    return {"step": step, **{f"validation_{k}": v for k, v in scores.metrics.items()},
            **{f"validation_{k}_se": v for k, v in scores.errors.items()}}


def loss_divides_by_item_count(model) -> bool:
    """Whether the model's loss honours the Trainer's num_items_in_batch: transformers' causal LMs do
    (ForCausalLMLoss sums over the tokens and divides by the count); sequence classification heads
    mean over their own batch and drop it."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__ in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


def trainer_class(base=None):
    """HarnessTrainer over the HF Trainer, or over a subclass of it (`base`: TRL's preference trainers)."""
    from transformers import Trainer

    plain = base is None  # TRL's trainers compute their own losses
    if base is None:
        base = Trainer

    class HarnessTrainer(base):
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

        _real_tokens: int | None = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if plain and self.model_accepts_loss_kwargs and not loss_divides_by_item_count(self.model):
                # The Trainer reads a forward(**kwargs) as "the loss divides by num_items_in_batch", so it
                # neither divides the loss by the accumulation steps nor leaves it unscaled over ranks
                # (x world size). A classification head (BERT's, Llama's) takes **kwargs but means its loss
                # over its own micro-batch: its gradients came out x accumulation steps (micro_batch_size,
                # OOM backoff) and x ranks. Such a model is treated as taking no loss kwargs, as the Trainer
                # treats one whose forward has none.
                self.model_accepts_loss_kwargs = False

        def compute_loss(self, model, inputs, *args, **kwargs):
            """A packed micro-batch brings its non-padding token count (tasks/packing.py), which is
            not a model input: taken out here, counted in _track_num_input_tokens."""
            from harness.tasks.packing import REAL_TOKENS

            if REAL_TOKENS in inputs:
                self._real_tokens = int(inputs.pop(REAL_TOKENS))
            return super().compute_loss(model, inputs, *args, **kwargs)

        def _track_num_input_tokens(self, inputs):
            """Packed micro-batches have no attention mask; the Trainer would count the tokens that
            are not the pad id, which misses the end-of-sequence tokens of models whose pad id is
            their eos (the padded run counts them) and counts a packed row's filler. Their own count
            instead: the row packer's, or every token of a flattened row (it has no filler)."""
            if self.args.include_num_input_tokens_seen == "non_padding" and "attention_mask" not in inputs \
                    and "position_ids" in inputs and "input_ids" in inputs:
                real, self._real_tokens = self._real_tokens, None
                self.state.num_input_tokens_seen += int(inputs["input_ids"].numel()) if real is None else real
                return
            return super()._track_num_input_tokens(inputs)

        def floating_point_ops(self, inputs) -> int:
            main = getattr(self.model, "main_input_name", "input_ids")
            if main not in inputs or not hasattr(self.model, "num_parameters"):
                return 0
            if self._non_embedding_params is None:
                self._non_embedding_params = self.model.num_parameters(exclude_embeddings=True)
            return 6 * inputs[main].numel() * self._non_embedding_params

        def create_accelerator_and_postprocess(self):
            """accelerate 1.16 turns FSDP on for GPU-like devices only and runs a CPU trial over gloo as
            plain DDP; FSDP2 itself shards on a CPU mesh (torch's own tests run it so). For a CPU trial asked
            to shard (the tests, a CPU measurement), the accelerator is switched to FSDP with the plugin the
            Trainer built from fsdp_config, before anything is prepared."""
            super().create_accelerator_and_postprocess()
            state = self.accelerator.state
            if self.args.fsdp_plugin_args is None or getattr(state, "fsdp_plugin", None) is not None:
                return
            from accelerate.state import PartialState
            from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

            if state.distributed_type != DistributedType.MULTI_CPU:
                return
            state.fsdp_plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
            state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.is_fsdp_enabled = True

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
