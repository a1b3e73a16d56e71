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
    head: str  # "sequence_classification" or "causal_lm"
    # (splits, tokenizer, max_length, labels) -> tokenized DatasetDict
    tokenize: Callable[..., Any]
    # (model, tokenizer, tokenized test split, batch size, device) -> metrics dict
    evaluate: Callable[..., dict[str, float]]
    # (eval_pred) -> metrics, for validation during training (pruning)
    compute_metrics: Callable[[Any], dict[str, float]] | None = None
    labels_from_data: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
