"""One trial, top to bottom like a recipe: load the model and apply the method, train with the HF
Trainer (validation scored at the rungs, or every eval_every_steps), evaluate on the test split,
return the record.
Runs inside the trial process. `setup_model` and `phase_memory` are the trial core the bench's bare
loop shares, so both measure the same thing the same way."""

from __future__ import annotations

import copy
import os
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.measure.host import HostLoad
from harness.measure.memory import PhaseMemory
from harness.measure.nvml import EnergyMeter
from harness.measure.flops import flops_per_token, peak_devices, peak_flops
from harness.measure.speed import StepTimer
from harness.methods import ApplyContext
from harness.methods.artifacts import save_trained, trainable_state_bytes
from harness.records.schema import Energy, Memory, Retention, Serving, Throughput, Timing, TrialRecord
from harness.runner.jobs import TrialJob
from harness.runner.logs import notices
from harness.runner.prepare import Prepared
from harness.runner.record import RecordBuilder, now
from harness.tasks.scores import Scores
from harness.runner.trainer import Diverged, Pruned, callbacks, trainer_class, training_args, training_kwargs


@dataclass
class TrialHooks:
    """How a running trial talks to the sweep: step progress, and the pruning question
    (the sweep process owns the Optuna study; a trial process only asks it)."""

    progress: Callable[[dict], None]
    should_prune: Callable[[float, int], bool]
    tick: Callable[[], None] = lambda: None  # called often while the trial runs (the claim's heartbeat)


def apply_context(job: TrialJob, prepared: Prepared) -> ApplyContext:
    return ApplyContext(task_type=prepared.head.peft_task_type, head_names=prepared.head_names,
                        model_type=prepared.model_type, max_steps=job.training.max_steps, device=job.device)


def phase_memory(job: TrialJob, prepared: Prepared) -> PhaseMemory:
    if job.device != "cuda":
        fault_in(prepared.model)
    return PhaseMemory(job.device, job.measure.nvml_period_ms / 1000.0, job.measure.phase_peaks,
                       inherited_model_bytes=prepared.model_bytes)


def fault_in(model) -> None:
    """Make the inherited base model resident before the trial's start is measured. Weights read
    from safetensors can live in a file mapping, whose pages a forked process does not inherit as
    resident: they came in at the first forward, inside the train phase, and were counted there on
    top of the baseline that had already subtracted them (train MiB = 2 x weights + ...). One read
    per 4 KiB page brings them in (~0.1 s for 500 MiB)."""
    import torch

    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.device.type == "cpu" and tensor.numel():
                step = max(4096 // tensor.element_size(), 1)
                tensor.detach().reshape(-1)[::step].sum()


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
    attention = job.acceleration.attention
    if method.load_kwargs is not None:
        extra = method.load_kwargs(job.method_params, ctx)
        if attention is not None:
            extra["attn_implementation"] = attention
        if job.device == "cuda":
            extra["device_map"] = {"": 0}
        if not job.copy_model:
            _release(prepared.model)
        model = prepared.load_variant(**extra)
    else:
        model = copy.deepcopy(prepared.model) if job.copy_model else prepared.model
        if attention is not None:
            model.set_attn_implementation(attention)
    _reinit_head(model, prepared.head_names)
    model = method.build(model, job.method_params, ctx)
    sharded = job.ranks > 1 and job.strategy == "fsdp"  # fully_shard moves each unit's shard to the rank's device
    if not getattr(model, "is_loaded_in_4bit", False) and not getattr(model, "is_loaded_in_8bit", False) \
            and not sharded:
        model.to(job.device)  # quantized models were placed on the device while loading
    return model, sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_trial(job: TrialJob, prepared: Prepared, hooks: TrialHooks) -> TrialRecord:
    return Trial(job, prepared, hooks).run()


class Trial:
    """A trial as a recipe whose methods are its phases: load, train, validate, test, finish."""

    def __init__(self, job: TrialJob, prepared: Prepared, hooks: TrialHooks):
        self.job, self.prepared, self.hooks = job, prepared, hooks
        self.timing, self.history, self.validation_s = Timing(), [], []
        self.memory, self.steps = phase_memory(job, prepared), StepTimer(cuda=job.device == "cuda")
        self.energy = EnergyMeter(self.memory.sampler)
        self.host = HostLoad()
        self.throughput = Throughput()
        self.phase = "load"
        self.model = None
        self.tracking = None
        self.snapshot = None  # the trained parameters before training, for retention's "before" (non-peft)
        family = prepared.family
        # what `evaluate` takes beside the usual arguments (preference: beta, the reference model)
        self.eval_extra = family.eval_options(prepared.task, prepared.model_spec) if family.eval_options else {}
        self.last_validation: tuple[int, Scores] | None = None  # the last in-loop score: (step, scores)
        self.record = RecordBuilder(**job.record_base, trial_number=job.trial_number, seed=job.seed,
                                    params=job.params, data_fingerprint=prepared.data_fingerprint,
                                    total_params=prepared.total_params, validation_source=prepared.validation_source,
                                    train_test_duplicates=prepared.train_test_duplicates,
                                    data_checks=prepared.data_checks, started_at=now())

    def run(self) -> TrialRecord:
        method = self.job.cell.method
        try:
            if method.baseline == "trivial":
                self.trivial()
            else:
                self.load()
                if method.trains:
                    self.train()
                if self.evaluates():
                    self.validate()
                    self.test()
                    if self.retains():
                        self.retain()
                    if self.serves():
                        self.serve()
                    if self.job.ranks > 1 and method.trains:
                        self.over_ranks()
            self.record.ended("complete")
        except Pruned as exc:
            self.record.ended("pruned", str(exc), "train")
        except Diverged as exc:
            self.record.ended("diverged", str(exc), self.phase)
        except Exception as exc:  # any other failure is a record, never a crashed sweep
            if is_out_of_memory(exc, capped=self.job.memory_limit_mib is not None and self.job.device == "cpu"):
                training = self.phase in ("load", "train")
                size = self.job.training.micro_batch if training else self.job.training.eval_batch_size
                self.record.ended("oom", f"out of memory in the {self.phase} phase at "
                                         f"{'micro-batch' if training else 'eval batch'} size {size}: "
                                         f"{type(exc).__name__}: {str(exc)[:300]}", self.phase)
                return self.finish()
            frames = traceback.format_exception(exc)
            self.record.ended("failed", f"{type(exc).__name__}: {exc}\n{''.join(frames[-3:])}"[:4000], self.phase)
        return self.finish()

    def track(self, record: TrialRecord) -> TrialRecord:
        """A complete trial's final figures into its tracker runs; the time spent in trackers,
        callbacks included, into the record."""
        tracking = self.tracking
        try:
            if record.status == "complete":
                tracking.finish(record)
        finally:
            tracking.close()
        record.timing.tracking_s = tracking.seconds
        return record

    def trivial(self) -> None:
        """No model: the task's trivial predictor on validation and test."""
        family, splits = self.prepared.family, self.prepared.splits
        self.record.tested(Scores.of(family.trivial(splits, "test")))
        self.record.validated(Scores.of(family.trivial(splits, "validation")).metrics)
        self.record.loaded(trainable_params=0)

    def load(self) -> None:
        """The model, with the method applied, on the device."""
        from transformers import set_seed

        set_seed(self.job.seed)
        t0 = time.perf_counter()
        self.memory.start("load")
        self.model, trainable = setup_model(self.job, self.prepared)
        self.record.loaded(trainable)
        self.memory.stop("load")
        self.timing.load_s = time.perf_counter() - t0
        if self.retains():
            from harness.measure.retention import Snapshot
            from harness.methods.base import is_peft

            t0 = time.perf_counter()
            if not is_peft(self.model):  # peft switches its adapters off; anything else is swapped back
                self.snapshot = Snapshot(self.model)
            self.timing.retention_s = time.perf_counter() - t0

    def evaluates(self) -> bool:
        """A trial over several ranks is scored by rank 0 alone, after training: the model is whole on every
        rank by then (DDP's replica, FSDP's gathered shards), so no forward needs the others, and rank 0
        takes the host's cores (`harness/runner/ranks.py` gave each rank its share for training)."""
        if self.job.ranks == 1:
            return True
        if int(os.environ.get("RANK", "0")) != 0:
            return False
        if self.job.device == "cpu":
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
        return True

    def retains(self) -> bool:
        """Retention is measured on runs that train (suite retention.enabled), on one device."""
        return self.job.retention is not None and self.job.cell.method.trains and self.job.ranks == 1

    def base_cache(self):
        """Where the base's figures are kept for every run on the same model and variant (None: not kept)."""
        import torch

        from harness.measure.retention import BaseCache

        job, prepared = self.job, self.prepared
        if job.retention_cache is None:
            return None
        method = job.cell.method  # a method that loads its own (quantized) copy has its own base
        variant = {"method": method.name, "params": job.method_params.model_dump(mode="json")} \
            if method.load_kwargs is not None else "as loaded"
        spec = job.retention
        return BaseCache(job.retention_cache, model=prepared.source, revision=prepared.model_spec.revision,
                         dtype=prepared.model_spec.dtype, params=prepared.total_params, head=prepared.head.name,
                         variant=variant,
                         data=spec.data.model_dump(mode="json") if spec.data else "builtin",
                         max_tokens=spec.max_tokens, batch_size=spec.batch_size, device=job.device,
                         acceleration=job.acceleration.options(), torch=torch.__version__)

    def retain(self) -> None:
        """What training made the model forget, within retention.max_share of the run's time so far (a
        failure here is kept in the record beside the run's scores, which stand)."""
        from harness.measure.retention import measure

        job, prepared, timing = self.job, self.prepared, self.timing
        self.phase = "retention"
        spent = timing.load_s + timing.train_s + timing.compile_s + timing.validation_s + timing.eval_s
        causal = prepared.head.auto_class == "AutoModelForCausalLM"
        rows = self.held_out_inputs(job.retention.drift_examples) if causal and job.retention.drift_examples else []
        t0 = time.perf_counter()
        self.memory.start("retention")
        try:
            found = measure(self.model, prepared.tokenizer, spec=job.retention, causal_lm=causal,
                            snapshot=self.snapshot, drift_rows=rows or None, device=job.device,
                            seconds=max(job.retention.max_share * spent - timing.retention_s, 0.0),
                            base_dir=job.base_dir, cache=self.base_cache() if causal else None)
            self.record.set(retention=Retention(**found))
        except Exception as exc:  # noqa: BLE001 - the task's scores stand without it
            self.record.set(retention=Retention(measure="nll" if causal else "representation",
                                                error=f"{type(exc).__name__}: {str(exc)[:500]}"))
        finally:
            self.memory.stop("retention")
            timing.retention_s += time.perf_counter() - t0

    def serves(self) -> bool:
        """The serving profile runs on the runs the suite's serving.runs picks, where training took place."""
        return self.job.serving is not None and self.job.cell.method.trains and self.job.ranks == 1

    def over_ranks(self) -> None:
        """A trial over several ranks says what it did not measure: the serving profile and retention time
        and compare one model on one device, and the ranks hold shards (FSDP) or copies (DDP) of it."""
        job = self.job
        why = (f"not measured: trained over {job.ranks} ranks ({job.strategy}); this measure needs the whole "
               f"model on one device (run the method with runner.distributed.processes: 1 to have it)")
        if job.serving is not None:
            self.record.set(serving=Serving(device=job.device, error=why))
        if job.retention is not None:
            causal = self.prepared.head.auto_class == "AutoModelForCausalLM"
            self.record.set(retention=Retention(measure="nll" if causal else "representation", error=why))

    def held_out_inputs(self, limit: int) -> list[list[int]]:
        """The validation split's inputs, at most `limit`: generative tasks' prompts, otherwise the tokenized
        examples (what retention's drift and the serving profile read)."""
        validation = self.prepared.data["validation"]
        column = next((c for c in ("prompt_ids", "input_ids") if c in validation.column_names), None)
        if column is None:
            return []
        return [list(r) for r in validation.select(range(min(limit, len(validation))))[column]]

    def serve(self) -> None:
        """What the tuned model costs to serve, within serving.max_share of the run's time so far, after
        everything else the record measures (a failure here is kept in the record; the scores stand)."""
        from harness.measure.serving import Workload, profile

        job, prepared, timing = self.job, self.prepared, self.timing
        spec = job.serving
        self.phase = "serving"
        spent = (timing.load_s + timing.train_s + timing.compile_s + timing.validation_s + timing.eval_s
                 + timing.retention_s)
        generate = prepared.head.auto_class == "AutoModelForCausalLM"
        t0 = time.perf_counter()
        try:
            pad = prepared.tokenizer.pad_token_id if prepared.tokenizer.pad_token_id is not None else 0
            work = Workload.of(self.held_out_inputs(max(64, spec.check_inputs)), pad, generate=generate,
                               batch=spec.batch if generate else job.training.eval_batch_size,
                               new_tokens=spec.new_tokens, check_inputs=spec.check_inputs)

            def reload_base():
                return prepared.load_variant().to(job.device)

            found = profile(self.model, method=job.cell.method, params=job.method_params, work=work,
                            device=job.device, rounds=spec.rounds, seconds=spec.max_share * spent,
                            reload_base=reload_base, memory=self.memory,
                            price_per_gpu_hour=job.measure.price_per_gpu_hour,
                            artifact_bytes=self.record.get("artifact_bytes"))
            self.record.set(serving=Serving(**found))
        except Exception as exc:  # noqa: BLE001 - the task's scores stand without it
            self.record.set(serving=Serving(device=job.device, error=f"{type(exc).__name__}: {str(exc)[:500]}"))
        finally:
            timing.serving_s = time.perf_counter() - t0

    def score(self, split: str) -> Scores:
        p = self.prepared
        return Scores.of(p.family.evaluate(self.model, p.tokenizer, p.data[split], self.job.training.eval_batch_size,
                                           self.job.device, p.head.name, **self.eval_extra))

    def train(self) -> None:
        """The Trainer's loop over the training split, scoring validation at the job's evaluation steps
        (the search's rungs, or every eval_every_steps for curves); validation's time and energy are
        kept out of training's."""
        job, prepared = self.job, self.prepared
        self.phase = "train"

        def in_loop_validation(step: int) -> Scores:
            with self.energy.span("validation"):
                scores = self.score("validation")
            self.last_validation = (step, scores)
            return scores

        if any(name in job.report_to for name in ("tensorboard", "wandb")):
            from harness.runner.tracking import Tracking

            self.tracking = Tracking(job.report_to, job.tracking_root, job.record_base["suite"], job.cell.id,
                                     job.run_name)
            self.tracking.start()
        with tempfile.TemporaryDirectory(prefix="harness-trial-") as out_dir:
            measure = callbacks(job, in_loop_validation, self.hooks, self.history, self.validation_s, self.steps)
            if prepared.family.trainer is not None:  # a family with its own trainer (TRL's preference trainers)
                trainer, extra, preference = prepared.family.trainer(
                    job, prepared, self.model, training_kwargs(job, out_dir, self.model), measure, lean=trainer_class)
                self.record.set(preference=preference)
                self.eval_extra.update(extra)
            else:
                trainer = trainer_class()(model=self.model, args=training_args(job, out_dir, self.model),
                                          train_dataset=prepared.data["train"],
                                          data_collator=prepared.head.collator(prepared.tokenizer,
                                                                               packing=job.acceleration.packing,
                                                                               attention=job.acceleration.attention),
                                          callbacks=measure)
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # logs go into the record's history, not stdout
            if self.tracking is not None:
                self.tracking.time_callbacks(trainer)
            self.memory.start("train")
            compiled_before = compile_clock() if job.acceleration.compile else 0.0
            t0, runtime = time.perf_counter(), None
            try:
                with self.energy.span("train"), no_cache_in_training(self.model):
                    runtime = float(trainer.train().metrics["train_runtime"])
            except Pruned as exc:  # what it spent until the rung that stopped it counts as compute
                self.record.stopped(exc.step, exc.value, exc.metric)
                runtime = time.perf_counter() - t0
                raise
            finally:
                self.memory.stop("train")
                if runtime is not None:
                    if job.acceleration.compile:
                        self.timing.compile_s = compile_seconds() - compiled_before
                    self.timing.train_s = runtime - sum(self.validation_s) - self.timing.compile_s
                    self.throughput = _throughput(self.model, trainer, job, self.timing.train_s, self.steps,
                                                  prepared.model_spec.dtype, prepared.family)
            if job.ranks > 1 and job.strategy == "fsdp":
                gather_shards(self.model)
                reference = self.eval_extra.get("reference")  # DPO's frozen copy: TRL shards it too
                if reference is not None and not isinstance(reference, str):
                    gather_shards(reference)

    def validate(self) -> None:
        """What every choice reads: the in-loop score of the last step where there is one."""
        self.phase = "validation"
        t0 = time.perf_counter()
        last = self.last_validation
        if last is not None and last[0] == self.throughput.train_steps and self.job.cell.metric in last[1].metrics:
            self.record.validated(last[1].metrics)
        else:
            with self.energy.span("validation_end"):
                self.record.validated(self.score("validation").metrics)
        self.timing.validation_s = time.perf_counter() - t0 + sum(self.validation_s)

    def test(self) -> None:
        """What is reported, read by no choice."""
        self.phase = "test"
        t0 = time.perf_counter()
        self.memory.start("eval")
        with self.energy.span("eval"):
            scores = self.score("test")
        self.record.tested(scores)
        self.memory.stop("eval")
        if "generation_tokens_per_s" in scores.rates:
            self.throughput.generation_tokens_per_s = scores.rates["generation_tokens_per_s"]
        self.timing.eval_s = time.perf_counter() - t0
        tested = len(self.prepared.data["test"])
        self.throughput.eval_samples_per_s = tested / self.timing.eval_s if self.timing.eval_s else 0.0
        if self.job.artifact_dir and self.job.cell.method.trains and self.job.ranks == 1:
            self.record.artifact(save_trained(self.model, Path(self.job.artifact_dir)), self.job.artifact_dir)
        else:
            self.record.artifact(trainable_state_bytes(self.model))

    def finish(self) -> TrialRecord:
        if self.snapshot is not None:  # every outcome: a forked trial ends in os._exit, where no finalizer runs
            self.snapshot.close()
        m = self.memory
        m.close()
        self.record.measured(
            history=self.history, timing=self.timing, throughput=self.throughput,
            host=self.host.read(m.sampler.handle if m.sampler is not None else None),
            energy=_energy(self.energy.joules, self.throughput.train_tokens, self.timing.train_s,
                           self.job.measure.price_per_gpu_hour, m.device, self.job.ranks),
            memory=Memory(source=m.source, train_bytes=m.above_baseline("train"), eval_bytes=m.above_baseline("eval"),
                          train_growth_bytes=m.growth("train"), peak_bytes=m.peak_bytes, by_phase_peak_bytes=m.peaks,
                          baseline_bytes=m.baseline_bytes, start_bytes=m.start_bytes, gpu=m.gpu))
        self.record.noticed(notices())
        record = self.record.build()
        return self.track(record) if self.tracking is not None else record


def gather_shards(model) -> None:
    """FSDP2 after training: every rank gathers the whole trained model once (the last collective) and
    keeps it, so rank 0 scores validation and test alone. Sharded, each forward would all-gather every
    layer, and generate runs one forward per token (over gloo on a CPU, minutes per batch). Evaluation
    memory is then a whole model, as the record's eval MiB says."""
    from torch.distributed.fsdp import FSDPModule

    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in modules:
        m.set_reshard_after_forward(False, recurse=False)
    for m in modules:
        m.unshard()


@contextmanager
def no_cache_in_training(model):
    """Decoders build a KV cache in every forward unless told not to, in training too; transformers
    then reads position ids as one sequence, so a packed micro-batch's examples would attend to each
    other. Off while training (as HF's training recipes set it); evaluation asks for the cache itself."""
    config = getattr(model, "config", None)
    before = getattr(config, "use_cache", None)
    if before:
        config.use_cache = False
    try:
        yield
    finally:
        if before:
            config.use_cache = before


def compile_clock() -> float:
    """compile_seconds() before a compiled run, with inductor set to compile in this process: a worker
    pool's CPU time would read as other processes' load (harness/measure/host.py) and mark the
    trial's speed as not its own."""
    import torch._inductor.config

    torch._inductor.config.compile_threads = 1
    return compile_seconds()


def compile_seconds() -> float:
    """Wall seconds torch.compile has spent in this process so far: dynamo's frame compiles and the
    backward graphs' compiles, recompiles included (torch._dynamo's own timers; no public API has them)."""
    from torch._dynamo.utils import calculate_time_spent

    spent = calculate_time_spent()
    return float(spent.get("entire_frame_compile", 0.0) + spent.get("entire_backward_compile", 0.0))


def _throughput(model, trainer, job: TrialJob, train_s: float, steps: StepTimer, dtype: str, family) -> Throughput:
    """Tokens/s over non-padding tokens, and MFU: FLOPs per token from the model's shapes (flops.py)
    times tokens/s, against the peak of this device at this dtype."""
    tokens = int(trainer.state.num_input_tokens_seen)  # over every rank: the Trainer gathers the count
    samples = trainer.state.global_step * job.training.micro_batch * job.training.accumulation * job.ranks
    sequences = samples * (2 if family.pairs else 1)  # a preference pair: two sequences
    flops = flops_per_token(model, tokens / max(sequences, 1))
    per_token = flops.per_token
    if family.holds_reference:  # DPO: each sequence also goes through the reference, forward
        per_token += flops.forward * flops.positions_per_token
    achieved = per_token * tokens / train_s if train_s else 0.0
    gpus = job.record_base["environment"].get("gpus") or []
    peak, source = peak_flops(job.device, gpus[0] if gpus else None, dtype)
    devices = peak_devices(job.device, job.ranks)
    if peak and devices > 1:  # MFU over every rank's device
        peak, source = peak * devices, f"{devices} x {source}"
    return Throughput(train_tokens=tokens, train_steps=int(trainer.state.global_step),
                      train_tokens_per_s=tokens / train_s if train_s else 0.0,
                      train_samples_per_s=samples / train_s if train_s else 0.0,
                      median_step_s=steps.median_after_warmup(), flops_per_token=per_token,
                      achieved_tflops=achieved / 1e12, mfu=achieved / peak if peak else None,
                      peak_flops=peak, peak_source=source)


def _energy(joules: dict[str, float], tokens: int, train_s: float, price: float | None, device: str,
            devices: int = 1) -> Energy:
    """Training's energy without the validation inside its loop; validation and test energy apart."""
    energy = Energy()
    if "train" in joules:
        train = joules["train"] - joules.get("validation", 0.0)
        energy = Energy(source="nvmlDeviceGetTotalEnergyConsumption (whole GPU), read around training and around "
                               "each validation inside it", train_joules=train,
                        joules_per_1k_tokens=1000.0 * train / tokens if tokens else None,
                        validation_joules=joules.get("validation", 0.0) + joules.get("validation_end", 0.0),
                        eval_joules=joules.get("eval"))
    if price is not None and device == "cuda":
        energy.cost_usd = price * devices * train_s / 3600.0  # every GPU the trial held
    return energy


def is_out_of_memory(exc: BaseException, capped: bool = False) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, and the CPU allocator's failure, which torch
    raises as a plain RuntimeError ("DefaultCPUAllocator: can't allocate memory"). Under an
    address-space cap (runner.trial_memory_mib), oneDNN's "could not create a primitive" is its
    allocation failing too."""
    import torch

    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                              or (capped and "could not create a primitive" in text))
