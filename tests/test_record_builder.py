"""One owner builds a trial record: each field checked against TrialRecord as it is set (an unknown
field or a wrong type refused at once), the record built once; the sweep's facts added through
`amend`, checked the same way; an evaluation's metrics, standard errors and rates kept apart."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from harness.records.schema import TrialRecord
from harness.records.synthetic import make_record
from harness.runner.record import RecordBuilder, amend
from harness.runner.trainer import history_entry
from harness.tasks.scores import Scores


def _identity() -> dict:
    record = make_record(method="lora")
    keep = ("suite", "suite_hash", "cell_id", "model", "task", "task_kind", "method", "method_name", "method_family",
            "objective_metric", "objective_direction", "trial_number", "seed")
    return {k: getattr(record, k) for k in keep}


def test_a_record_is_filled_phase_by_phase_and_built_once():
    builder = RecordBuilder(**_identity(), started_at="2026-12-06T00:00:00+00:00")
    builder.loaded(trainable_params=1234)
    builder.validated({"accuracy": 0.8})
    builder.tested(Scores.of({"accuracy": 0.75, "se:accuracy": 0.02, "generation_tokens_per_s": 9.0}))
    builder.artifact(4096)
    builder.ended("complete")
    record = builder.build()
    assert isinstance(record, TrialRecord) and record.status == "complete"
    assert record.metrics == {"accuracy": 0.75} and record.metric_errors == {"accuracy": 0.02}
    assert record.validation_metrics == {"accuracy": 0.8} and record.trainable_params == 1234
    assert record.artifact_bytes == 4096 and record.artifact_path is None


def test_an_unknown_field_or_a_wrong_type_is_refused_when_it_is_set():
    builder = RecordBuilder(**_identity())
    with pytest.raises(AttributeError, match="no field 'colour'"):
        builder.set(colour="red")
    with pytest.raises(ValidationError):
        builder.loaded(trainable_params="many")
    with pytest.raises(ValidationError):  # a record without a status is no record
        builder.build()


def test_the_sweep_adds_its_facts_through_amend_checked_like_the_rest():
    record = make_record(method="lora")
    amended = amend(record, worker="host:1", attempts=[{"micro_batch_size": 8, "status": "oom", "reason": "x"}])
    assert amended.worker == "host:1" and amended.attempts[0]["micro_batch_size"] == 8
    assert record.worker != "host:1"  # the built record itself is not patched
    with pytest.raises(ValidationError):
        amend(record, halving="rung one")
    with pytest.raises(AttributeError):
        amend(record, rung=1)


def test_scores_keep_metrics_errors_and_rates_apart():
    raw = {"accuracy": 0.9, "macro_f1": 0.8, "se:accuracy": 0.01, "se:macro_f1": math.nan,
           "generation_tokens_per_s": 120.0}
    scores = Scores.of(raw)
    assert scores.metrics == {"accuracy": 0.9, "macro_f1": 0.8}
    assert scores.errors == {"accuracy": 0.01}  # a NaN error is left out: JSON has no NaN
    assert scores.rates == {"generation_tokens_per_s": 120.0}
    assert history_entry(10, scores) == {"step": 10, "validation_accuracy": 0.9, "validation_macro_f1": 0.8,
                                         "validation_accuracy_se": 0.01}
