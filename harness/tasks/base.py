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
    objective: str | None = None  # preference families: what trains on the pairs (the task's `objective:`)
    # A family that trains through its own trainer (TRL's preference trainers) instead of the harness's
    # HarnessTrainer: (job, prepared, model, training_kwargs, callbacks, lean=the runner's trainer_class)
    # -> (trainer, evaluation extras,
    # the record's `preference` note). The extras (the reference model) go to `evaluate` as keywords.
    trainer: Callable[..., Any] | None = None
    # (task spec, model spec) -> keyword arguments `evaluate` takes beside the usual ones (beta, max_length)
    eval_options: Callable[[Any], dict[str, Any]] | None = None
    # training holds a frozen reference model beside the policy (DPO): a copy of the weights, unless the
    # method is a peft adapter that can be switched off (harness estimate counts it)
    holds_reference: bool = False
    # a training example is a pair whose two sequences go through the model in one batch
    pairs: bool = False
    # (method spec) -> why the method cannot run under this family, or None
    method_problem: Callable[[Any], str | None] = lambda method: None
    # a validation loss `evaluate` reports (lower is better) that search.rung_metric: loss judges runs
    # stopped early by: a continuous score that moves with every step, where the headline metric is
    # often the same constant guess for every configuration at an early rung. None: the objective
    rung_metric: str | None = None
    # the fields whose every value must be a non-empty string (harness/tasks/checks.py); None: every
    # field that is neither optional nor the label
    text: tuple[str, ...] | None = None
    # (a row as {field: value}) -> [(field, reason, message)]: what else makes a row unusable for this
    # family (a QA answer that is none of its options); reasons are keys of checks.REASONS
    row_check: Callable[[dict], list[tuple[str, str, str]]] | None = None

    @property
    def key(self) -> str:
        """Its name in the registry: the kind, or kind/variant."""
        return f"{self.name}/{self.variant}" if self.variant else self.name

    @property
    def text_fields(self) -> tuple[str, ...]:
        if self.text is not None:
            return self.text
        return tuple(f for f in self.fields if f not in self.optional_fields and f != self.label_field)

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
        task: its columns, files and objective metric; and a Problem located in the data file itself
        for each fault the data checks find there."""
        from harness.errors import Problem
        from harness.tasks.data import data_problems

        out = [found if isinstance(found, Problem) else (("data",) + found[0], found[1])
               for found in data_problems(task.data, self, base_dir)]
        if (task.objective is not None or task.beta is not None) and self.objective is None:
            key = "objective" if task.objective is not None else "beta"
            out.append(((key,), f"task {task.name} ({self.name}) takes no {key}: only preference tasks do"))
        if task.metric is not None and task.metric not in self.metrics:
            out.append((("metric",), f"task {task.name} ({self.name}) does not report {task.metric!r}; "
                                     f"it reports {', '.join(self.metrics)}"))
        return out

    def unsupported(self, is_decoder: bool) -> str | None:
        if self.head_for(is_decoder) is None:
            kind = self.name + (f" with head {self.variant}" if self.variant else "")
            return f"the {kind} task needs {'an encoder' if is_decoder else 'a decoder LM'}"
        return None
