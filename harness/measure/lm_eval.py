"""lm-evaluation-harness tasks on the trial's in-memory model, before (the base: see
measure/retention.py's base_view) and after training: lm-eval's own `simple_evaluate` over its HF
model wrapper (HFLM takes an initialised model), so every task, prompt and metric is lm-eval's."""

from __future__ import annotations

import logging
from pathlib import Path

from harness.spec import LmEvalSpec


def _scores(results: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} with each metric's standard error as se:<metric> (lm-eval's 'acc,none' keys)."""
    out = {}
    for task, values in (results.get("results") or {}).items():
        metrics = {}
        for key, value in values.items():
            name, _, _filter = key.partition(",")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in ("alias", "sample_len"):
                metrics[f"se:{name[:-len('_stderr')]}" if name.endswith("_stderr") else name] = float(value)
        out[task] = metrics
    return out


def evaluate(model, tokenizer, spec: LmEvalSpec, base_dir: str | None = None) -> dict[str, dict[str, float]]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    include = str(Path(base_dir or ".") / spec.include_path) if spec.include_path else None
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=spec.batch_size)
    results = lm_eval.simple_evaluate(model=lm, tasks=list(spec.tasks), num_fewshot=spec.num_fewshot,
                                      limit=spec.limit, task_manager=TaskManager(include_path=include),
                                      log_samples=False, bootstrap_iters=1000, verbosity="ERROR")
    return _scores(results or {})


def before_and_after(model, view, tokenizer, spec: LmEvalSpec, *, device: str, base_dir: str | None = None) -> dict:
    """{task: {metric: {"before", "after", "change"}}}; soft prompts are left out (lm-eval scores the logits
    of the input's own positions, and a soft prompt's virtual tokens shift them)."""
    from harness.methods.base import is_peft

    if is_peft(model) and model.peft_config[model.active_adapter].is_prompt_learning:
        return {"skipped": "soft prompts and prefixes: lm-eval scores the input's own positions"}
    after = evaluate(model, tokenizer, spec, base_dir)
    with view() as base:
        before = evaluate(base, tokenizer, spec, base_dir)
    return {task: {metric: {"before": before.get(task, {}).get(metric), "after": value,
                            "change": value - before[task][metric] if metric in before.get(task, {}) else None}
                   for metric, value in metrics.items()}
            for task, metrics in after.items()}
