"""Each method at the team's real target (`decision.target`: the model it will train, on its GPU):
memory, the largest micro-batch and tokens/s predicted there by `harness estimate` from the model's
config alone, calibrated on this run's records where they were measured on the same kind of device
(a CPU's resident memory and utilization say nothing of a GPU's). What the answer's limits read when
a target is set; the quality stays the one measured on the suite's model, and is labelled so."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.spec import DecisionSpec, parse_bytes


def fits_somewhere(row: dict) -> bool | None:
    """Whether a method fits at the target at some micro-batch (gradient accumulation keeps the batch);
    None where no memory limit is known."""
    most = row.get("max_micro_batch")
    return most >= 1 if most is not None else row.get("fits")


def target_of(decided: DecisionSpec):
    """The estimate's Target for the decision's target (GPU kind, memory), or None without one."""
    from harness.estimate import Target, target_for

    spec = decided.target
    if spec is None:
        return None
    gpu = spec.gpu or decided.limits.gpu
    memory = spec.memory or decided.limits.memory
    limit = parse_bytes(memory) if memory else None
    if gpu:
        return target_for("cuda", gpu, limit, None)
    return Target("cuda", limit, None, "no GPU kind given (decision.target.gpu): no speed predicted")


def at_target(suite_text: str, base_dir: Path, decided: DecisionSpec, records, cache_dir: Path | None = None) -> list[dict]:
    """One row per task x method of the suite that trains: predicted train memory at the target (bytes,
    the CUDA context counted for fitting), whether it fits, the largest micro-batch that does, tokens/s
    and the hours of one run of this suite's steps there. Cached beside the report (an estimate of a
    large model takes seconds per method), keyed by everything it reads."""
    import yaml

    from harness.config.loader import check_raw
    from harness.config.yaml_lines import LineMap
    from harness.estimate.suite import calibrate

    spec = decided.target
    if spec is None:
        return []
    same_device = [r for r in records if (r.estimate or {}).get("device") == "cuda"]
    calibration = calibrate(same_device) if same_device else None
    key = hashlib.sha256(json.dumps([suite_text, decided.model_dump(), calibration, str(base_dir)], sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    cached = cache_dir / "target-estimate.json" if cache_dir else None
    if cached is not None and cached.exists():
        saved = json.loads(cached.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["rows"]
    raw = yaml.safe_load(suite_text)
    suite, problems = check_raw(raw, base_dir, LineMap("decision.target"))
    if suite is None:
        return []
    rows = _predict(suite, base_dir, decided, calibration)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"key": key, "rows": rows}, indent=1), encoding="utf-8")
    return rows


def _predict(suite, base_dir: Path, decided: DecisionSpec, calibration: dict | None) -> list[dict]:
    from harness.estimate import estimate
    from harness.estimate.suite import model_config
    from harness.plan import head_for, plan, trial_training
    from harness.spec import ModelSpec
    from harness.tasks import family_for

    spec, target = decided.target, target_of(decided)
    model = ModelSpec(source=spec.model, revision=spec.revision, dtype=spec.dtype)
    config = model_config(model, base_dir)
    rows, seen = [], set()
    for cell in plan(suite):
        if not cell.method.trains or (cell.task_label, cell.method_label) in seen:
            continue
        seen.add((cell.task_label, cell.method_label))
        training = trial_training(suite, cell.method.split(cell.fixed)[1])
        family = family_for(cell.task)
        seq_len = spec.seq_len or cell.model.max_length
        found = estimate(cell.id, cell.method, cell.fixed, training, config=config, head=head_for(family, config),
                         pairs=family.pairs, holds_reference=family.holds_reference,
                         num_labels=len(cell.task.labels or ()) or 2, seq_len=seq_len, dtype=spec.dtype,
                         target=target, calibration=calibration,
                         gradient_checkpointing=cell.acceleration.gradient_checkpointing)
        tokens = suite.training.max_steps * training.batch_size * seq_len
        speed = found.predicted_tokens_per_s
        rows.append({"task": cell.task_label, "method": cell.method_label, "model": spec.model,
                     "gpu": target.gpu_name, "seq_len": seq_len, "dtype": spec.dtype,
                     "micro_batch": found.micro_batch, "predicted_bytes": found.predicted_peak_bytes,
                     "fit_bytes": found.predicted_peak_bytes + found.parts.get("cuda_context", 0),
                     "limit_bytes": found.memory_limit_bytes, "fits": found.fits,
                     "max_micro_batch": found.max_micro_batch, "tokens_per_s": speed,
                     "train_hours": tokens / speed / 3600 if speed else None,
                     "calibrated": bool(calibration and cell.method.name in calibration.get("activation_factor", {})),
                     "assumptions": found.assumptions})
    return rows
