"""Synthetic trial records with known effects, for tests and benchmarks of everything downstream
of a sweep (leaderboards, reports, comparisons) without training anything."""

from __future__ import annotations

import random

from harness.records.schema import Memory, Throughput, Timing, TrialRecord
from harness.spec import cell_id

ENV = {"versions": {"torch": "synthetic"}, "python": "3.11", "platform": "synthetic", "cpu": "synthetic",
       "cpu_count": 2, "ram_bytes": 2**34, "gpus": [], "driver": None, "git_commit": "0" * 40, "git_dirty": False}


def make_record(*, suite: str = "synthetic", task: str = "sentiment", model: str = "tiny", method: str = "lora",
                trial: int = 0, seed: int = 0, accuracy: float = 0.8, status: str = "complete",
                peak_mib: float = 500.0, train_s: float = 10.0, tokens_per_s: float = 1000.0,
                trainable: int = 1000, total: int = 100_000, family: str = "reparametrized",
                reason: str | None = None, phase: str = "search", validation: float | None = None,
                duplicates: int = 0, test_size: int = 200, fingerprint: str = "synthetic",
                env: dict | None = None, forgetting: float | None = None) -> TrialRecord:
    """validation: the trial's validation accuracy (what choices read); default: its test accuracy.
    test_size: the test split's size behind accuracy's binomial standard error. forgetting: a retention
    record with this forgetting (nats/token, standard error 0.005 over 100 documents)."""
    from harness.records.schema import Retention

    from harness.metrics.errors import binomial_se

    done = status == "complete"
    return TrialRecord(
        suite=suite, suite_hash="synthetic", cell_id=cell_id(task, model, method), model=model, task=task,
        task_kind="classification", method=method, method_name=method, method_family=family,
        trial_number=trial, seed=seed, phase=phase, status=status, reason=reason, params={"learning_rate": 1e-3},
        objective_metric="accuracy", objective_direction="maximize",
        metrics={"accuracy": accuracy, "macro_f1": accuracy - 0.01} if done else {},
        validation_metrics={"accuracy": accuracy if validation is None else validation} if done else {},
        metric_errors={"accuracy": binomial_se(accuracy, test_size)} if done else {},
        validation_source={"origin": "given", "size": 100}, train_test_duplicates=duplicates,
        history=[{"step": s, "loss": 0.7 - 0.05 * s * accuracy} for s in range(1, 6)] if done else [],
        trainable_params=trainable, total_params=total,
        timing=Timing(load_s=0.5, train_s=train_s, eval_s=1.0, total_s=train_s + 2.0),
        throughput=Throughput(train_tokens=int(tokens_per_s * train_s), train_tokens_per_s=tokens_per_s,
                              train_steps=50, median_step_s=train_s / 50),
        memory=Memory(source="synthetic", train_bytes=int(peak_mib * 2**20), eval_bytes=int(peak_mib * 2**20 * 0.8),
                      peak_bytes=int(peak_mib * 2**20) + 400 * 2**20),
        data_fingerprint=fingerprint, environment=env or ENV,
        retention=Retention(measure="nll", documents=100, forgetting=forgetting, forgetting_se=0.005, drift=0.01)
        if forgetting is not None and done else None,
        started_at="2026-11-27T00:00:00+00:00", finished_at="2026-11-27T00:01:00+00:00")


def many_records(n: int, seed: int = 0, methods: int = 10, models: int = 4, tasks: int = 3) -> list[TrialRecord]:
    """n records spread over tasks x models x methods, a few of them failed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        status = "complete" if rng.random() > 0.05 else rng.choice(["failed", "pruned", "oom", "crashed"])
        out.append(make_record(task=f"task{i % tasks}", model=f"model{(i // tasks) % models}",
                               method=f"method{(i // (tasks * models)) % methods}", trial=i, seed=i % 3,
                               accuracy=rng.uniform(0.5, 0.95), status=status, peak_mib=rng.uniform(300, 3000),
                               train_s=rng.uniform(5, 100), tokens_per_s=rng.uniform(500, 5000),
                               trainable=rng.randint(1000, 10**7), total=10**8,
                               reason=None if status == "complete" else f"synthetic {status}"))
    return out
