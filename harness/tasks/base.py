"""What a task family is: its data fields, metrics (with direction), model head and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class TaskFamily:
    name: str
    summary: str
    fields: tuple[str, ...]  # canonical columns the data must provide
    metrics: dict[str, bool]  # metric name -> higher is better
    encoder_head: str | None  # "sequence_classification", or None where encoders cannot do the task
    decoder_head: str | None  # "sequence_classification" or "causal_lm"
    # (splits, tokenizer, max_length, labels, head) -> DatasetDict: train/validation tokenized for the
    # Trainer; test in whatever form `evaluate` reads
    tokenize: Callable[..., Any]
    # (model, tokenizer, test split, batch size, device, head) -> metrics dict
    evaluate: Callable[..., dict[str, float]]
    # (eval_pred) -> metrics, for validation during training (pruning)
    compute_metrics: Callable[[Any], dict[str, float]] | None = None
    optional_fields: dict[str, Any] = field(default_factory=dict)  # field -> value where the data lacks it
    label_field: str | None = None  # classification heads learn one class per distinct value of it
    # every metric of the family lies in this range (accuracy, F1, ROUGE are fractions); the
    # leaderboard clips its seed intervals to it, since a t-interval knows no bounds
    metric_range: tuple[float, float] | None = (0.0, 1.0)

    @property
    def main_metric(self) -> str:
        return next(iter(self.metrics))

    def head_for(self, is_decoder: bool) -> str | None:
        return self.decoder_head if is_decoder else self.encoder_head

    def problems(self, task, base_dir) -> list[tuple[tuple, str]]:
        """(path relative to the task entry, message) for what this family finds wrong with a suite's
        task without loading the data: its columns, files and objective metric."""
        from harness.tasks.data import data_problems

        out = [(("data",) + rel, msg)
               for rel, msg in data_problems(task.data, self.fields, base_dir, tuple(self.optional_fields))]
        if task.metric is not None and task.metric not in self.metrics:
            out.append((("metric",), f"task {task.name} ({self.name}) does not report {task.metric!r}; "
                                     f"it reports {', '.join(self.metrics)}"))
        return out

    def unsupported(self, is_decoder: bool) -> str | None:
        if self.head_for(is_decoder) is None:
            return f"the {self.name} task needs a {'encoder' if is_decoder else 'decoder LM'}"
        return None
