"""The one owner of a trial record: a builder the trial fills phase by phase (each field checked
against TrialRecord's type as it is set, an unknown field refused at once), built once when the trial
ends; and `amend`, through which the sweep adds what only it knows (the worker, the out-of-memory
attempts, the prediction, the successive-halving stage) to a built record, checked the same way."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from harness.records.schema import Memory, TrialRecord
from harness.tasks.scores import Scores


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=None)
def _field_type(name: str):
    from pydantic import TypeAdapter

    if name not in TrialRecord.model_fields:
        raise AttributeError(f"a trial record has no field {name!r}")
    return TypeAdapter(TrialRecord.model_fields[name].annotation)


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: _field_type(name).validate_python(value) for name, value in fields.items()}


class RecordBuilder:
    """A trial record in the making (runner/trial.py): its identity from the job and the prepared
    data, then what each phase adds, then `build()`."""

    def __init__(self, **fields: Any):
        self._fields: dict[str, Any] = {}
        self.set(**fields)

    def set(self, **fields: Any) -> None:
        self._fields.update(_checked(fields))

    def get(self, name: str, default=None):
        return self._fields.get(name, default)

    # the phases, in the order a trial runs them
    def loaded(self, trainable_params: int) -> None:
        self.set(trainable_params=trainable_params)

    def validated(self, metrics: dict[str, float]) -> None:
        """What every choice reads: the objective and its companions on the validation split."""
        self.set(validation_metrics=metrics)

    def tested(self, scores: Scores) -> None:
        """What is reported, read by no choice."""
        self.set(metrics=scores.metrics, metric_errors=scores.errors)

    def artifact(self, size_bytes: int, path: str | None = None) -> None:
        self.set(artifact_bytes=size_bytes, **({"artifact_path": path} if path else {}))

    def stopped(self, step: int, value: float, metric: str) -> None:
        """Where a pruned run stopped, and its validation score there."""
        self.set(stopped_at_step=step, stopped_value=value, stopped_metric=metric)

    def ended(self, status: str, reason: str | None = None, failed_phase: str | None = None) -> None:
        self.set(status=status, **({"reason": reason} if reason is not None else {}),
                 **({"failed_phase": failed_phase} if failed_phase is not None else {}))

    def measured(self, *, history, timing, throughput, memory: Memory, energy, host: dict) -> None:
        self.set(history=history, timing=timing, throughput=throughput, memory=memory, energy=energy, host=host,
                 finished_at=now())

    def noticed(self, notices: list) -> None:
        """Library warnings that could matter to this trial's numbers (runner/logs.py)."""
        if notices:
            self.set(environment={**self.get("environment", {}), "notices": notices})

    def build(self) -> TrialRecord:
        return TrialRecord.model_validate(self._fields)


def amend(record: TrialRecord, **facts: Any) -> TrialRecord:
    """The record with the sweep's facts added (each checked against its field's type)."""
    return record.model_copy(update=_checked(facts))
