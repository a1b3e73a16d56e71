"""What a task family is: its data fields, metrics (with direction), model head and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class TaskFamily:
    name: str  # the suite's `kind`
    summary: str
    fields: tuple[str, ...]  # canonical columns the data must provide
    metrics: dict[str, bool]  # metric name -> higher is better
    encoder_head: str | None  # a head in harness/tasks/heads.py, or None where encoders cannot do the task
    decoder_head: str | None
    # (splits, tokenizer, max_length, labels, head) -> DatasetDict: train tokenized for the Trainer;
    # validation and test in the form `evaluate` reads (both are scored the same way)
    tokenize: Callable[..., Any]
    # (model, tokenizer, split, batch size, device, head) -> metrics dict, for validation and test alike
    evaluate: Callable[..., dict[str, float]]
    # (raw splits, split name) -> metrics of the task's trivial predictor on that split, with no model
    # (majority class, lead sentences): the floor every method's row is read against
    trivial: Callable[[Any, str], dict[str, float]] | None = None
    trivial_name: str = ""  # what the trivial predictor does, for the leaderboard ("majority class")
    variant: str | None = None  # a second family of the same kind, chosen by the task's `head:`
    optional_fields: dict[str, Any] = field(default_factory=dict)  # field -> value where the data lacks it
    label_field: str | None = None  # classification heads learn one class per distinct value of it
    # every metric of the family lies in this range (accuracy, F1, ROUGE are fractions); the
    # leaderboard clips its seed intervals to it, since a t-interval knows no bounds
    metric_range: tuple[float, float] | None = (0.0, 1.0)

    @property
    def key(self) -> str:
        """Its name in the registry: the kind, or kind/variant."""
        return f"{self.name}/{self.variant}" if self.variant else self.name

    @property
    def heads(self) -> set[str]:
        return {h for h in (self.encoder_head, self.decoder_head) if h}

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
            kind = self.name + (f" with head {self.variant}" if self.variant else "")
            return f"the {kind} task needs {'an encoder' if is_decoder else 'a decoder LM'}"
        return None
