"""Multi-fidelity search (search.strategy): the rungs are where validation runs, a pruned trial stops
at a rung and its record says where and at what score, the report counts the compute spent against
the full grid, and a sweep killed mid-bracket continues where it stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest

from harness.cli import main
from harness.config.loader import load_suite
from harness.records.store import FileRecordStore
from harness.report.compute import compute_table
from harness.plan import evaluation_steps, rungs

# Summaries by a tiny random decoder: their validation ROUGE-L after a few steps differs from trial to
# trial, so successive halving stops some of the 6 trials at a rung (classification: CLASSIFY below).
SUITE = """\
name: {name}
models: [{{source: 'builtin:tiny-llama', max_length: 96}}]
tasks: [{{name: dialogsum, kind: summarization, data: {{builtin: dialogsum-mini, train_size: 48, validation_size: 8, test_size: 8}}}}]
methods: [{{name: lora}}]
search: {{trials_per_cell: {trials}, seed: 0, sampler: random, strategy: {strategy}, min_steps: 2, reduction_factor: 3}}
training: {{max_steps: 18, batch_size: 8, eval_batch_size: 8}}
runner: {{heartbeat_s: 1, lost_after_s: 4}}
references: false
"""
STUDY = "dialogsum--tiny-llama--lora"
KEY = "validation_rougeL"


def test_rungs_follow_min_steps_and_reduction_factor(write_suite):
    suite = load_suite(write_suite(SUITE.format(name="r", trials=2, strategy="asha"))).suite
    assert rungs(suite) == [2, 6] and evaluation_steps(suite) == (2, 6)
    default = suite.model_copy(update={"search": suite.search.model_copy(update={"min_steps": None}),
                                       "training": suite.training.model_copy(update={"max_steps": 100})})
    assert rungs(default) == [3, 9, 27]  # max_steps // 3^3, then x3 while a rung leaves 3x its steps
    # without a strategy the loop scores validation only where eval_every_steps asks (curves)
    plain = suite.model_copy(update={"search": suite.search.model_copy(update={"strategy": "none"}),
                                     "training": suite.training.model_copy(update={"eval_every_steps": 5})})
    assert evaluation_steps(plain) == (5, 10, 15)


@pytest.mark.parametrize("old, new, field, words", [
    ("eval_batch_size: 8}", "eval_batch_size: 8, eval_every_steps: 4}", "training.eval_every_steps", "rungs"),
    ("min_steps: 2", "min_steps: 7", "search.min_steps", "at most training.max_steps"),
    ("strategy: asha", "pruner: median", "search.pruner", "search.strategy"),
])
def test_validate_explains_rung_settings_that_cannot_work(write_suite, capsys, old, new, field, words):
    text = SUITE.format(name="v", trials=2, strategy="asha")
    assert old in text
    assert main(["validate", str(write_suite(text.replace(old, new)))]) == 2
    err = capsys.readouterr().err
    assert re.search(r"suite\.yaml:\d+: " + re.escape(field), err) and words in err, err


def _run(suite, tmp_path, *extra):
    return main(["run", str(suite), "--quiet", "--results", str(tmp_path / "results"),
                 "--reports", str(tmp_path / "reports"), *extra])


@pytest.mark.e2e
def test_asha_evaluates_at_the_rungs_and_records_where_a_trial_stopped(write_suite, tmp_path, capsys):
    suite = write_suite(SUITE.format(name="asha", trials=6, strategy="asha"))
    assert _run(suite, tmp_path) == 0
    out = capsys.readouterr().out
    records = FileRecordStore(tmp_path / "results" / "asha").load_all()
    search = [r for r in records if r.phase == "search"]
    assert len(search) == 6 and {r.status for r in search} <= {"complete", "pruned"}
    pruned = [r for r in search if r.status == "pruned"]
    assert pruned, [(r.trial_number, r.history) for r in search]
    for r in search:
        steps = [h["step"] for h in r.history if KEY in h]
        # validation ran at the rungs and nowhere else in the loop (the final score is taken apart)
        assert steps and set(steps) <= {2, 6}, steps
        # summarization reports no validation loss: the rungs judge by the objective
        assert r.config["search"] == {"strategy": "asha", "rungs": [2, 6], "rung_metric": "rougeL"}
    for r in pruned:
        assert r.stopped_at_step in (2, 6) and r.throughput.train_steps == r.stopped_at_step
        last = [h for h in r.history if KEY in h][-1]
        assert last["step"] == r.stopped_at_step and last[KEY] == r.stopped_value and r.stopped_metric == "rougeL"
        assert r.failed_phase == "train" and not r.metrics  # never scored on test
        assert r.timing.train_s > 0
    for r in search:
        if r.status == "complete":
            assert r.throughput.train_steps == 18 and r.metrics
    # what Optuna saw is what the records say
    study = optuna.load_study(study_name=STUDY,
                              storage=FileRecordStore(tmp_path / "results" / "asha").study_storage_url)
    for t in study.trials:
        assert set(t.intermediate_values) <= {2, 6}
    assert Counter(t.state.name for t in study.trials)["PRUNED"] == len(pruned)
    # compute spent against the full grid, in the terminal, the report and its table
    [row] = compute_table(records).itertuples()
    assert row.full_steps == 6 * 18 and row.steps == sum(r.throughput.train_steps for r in search) < 6 * 18
    assert row.pruned == len(pruned)
    assert "of the full grid's 108 steps" in out
    page = (tmp_path / "reports" / "asha" / "index.html").read_text()
    assert "Compute spent" in page and "Validation curves" in page


def _run_until_killed(suite, tmp_path, until) -> list[str]:
    """`harness run` in a process of its own, killed (SIGKILL, its whole process group) once `until()`
    holds; the command line, to run the same again."""
    args = [sys.executable, "-m", "harness.cli", "run", str(suite), "--quiet", "--results", str(tmp_path / "results"),
            "--reports", str(tmp_path / "reports")]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not until():
        assert run.poll() is None, run.stdout.read()
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    return args


@pytest.mark.e2e
def test_a_sweep_killed_mid_bracket_continues_with_the_trials_it_had(write_suite, tmp_path):
    suite = write_suite(SUITE.format(name="kill", trials=6, strategy="asha"))
    folder = tmp_path / "results" / "kill" / "records"
    args = _run_until_killed(suite, tmp_path, lambda: len(list(folder.glob("*/trial-*.json"))) >= 3)
    store = FileRecordStore(tmp_path / "results" / "kill")
    before = {r.trial_number: r for r in store.load_all()}
    assert 3 <= len(before) < 6
    study_url = store.study_storage_url
    old = {t.number: dict(t.intermediate_values) for t in optuna.load_study(
        study_name=STUDY, storage=study_url).trials if t.number in before}
    rerun = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout
    after = [r for r in store.load_all() if r.phase == "search"]
    done = [r for r in after if r.status in ("complete", "pruned")]
    assert len(done) == 6 and len({r.trial_number for r in after}) == len(after)  # the budget, each trial once
    for number, r in before.items():  # what was recorded before the kill stays as it was
        again = next(x for x in after if x.trial_number == number)
        assert again.model_dump() == r.model_dump()
    study = optuna.load_study(study_name=STUDY, storage=study_url)
    # the bracket's earlier scores are still there for the pruner to rank the new trials against
    assert {t.number: dict(t.intermediate_values) for t in study.trials if t.number in old} == old
    assert all(json.loads(p.read_text())["suite"] == "kill" for p in folder.glob("*/trial-*.json"))


def test_a_sha_bracket_is_planned_rung_by_rung(write_suite):
    from harness.runner.halving import bracket, kept

    suite = load_suite(write_suite(SUITE.format(name="b", trials=6, strategy="sha"))).suite
    # 6 configurations to step 2, the best 2 to step 6, the best of those to the end
    assert bracket(suite, 6) == [(6, 2), (2, 6), (1, 18)]
    assert bracket(suite, 2) == [(2, 2), (1, 18)]  # a single survivor goes straight to the end
    assert bracket(suite, 9) == [(9, 2), (3, 6), (1, 18)]
    assert kept(0, 3) == 0 and kept(2, 3) == 1 and kept(7, 3) == 2


def _value_at(record, step):
    return next(h[KEY] for h in record.history if KEY in h and h["step"] == step)


@pytest.mark.e2e
def test_sha_judges_each_rung_together_and_counts_every_run(write_suite, tmp_path, capsys):
    suite = write_suite(SUITE.format(name="sha", trials=6, strategy="sha"))
    assert _run(suite, tmp_path) == 0
    out = capsys.readouterr().out
    store = FileRecordStore(tmp_path / "results" / "sha")
    records = store.load_all()
    search = sorted((r for r in records if r.phase == "search"), key=lambda r: r.trial_number)
    # one record per configuration: its latest run
    assert [r.trial_number for r in search] == list(range(6))
    assert Counter((r.status, r.stopped_at_step) for r in search) == {("pruned", 2): 4, ("pruned", 6): 1,
                                                                      ("complete", None): 1}
    for r in search:
        assert r.config["search"] == {"strategy": "sha", "rungs": [2, 6], "rung_metric": "rougeL"}
        steps = [h["step"] for h in r.history if KEY in h]
        assert set(steps) <= {2, 6}, steps  # validation ran at the rungs only
        rung = {2: 0, 6: 1}.get(r.stopped_at_step, 2)
        assert r.halving["rung"] == rung and r.halving["bracket"] == [6, 2, 1][rung]
        assert [e["rung"] for e in r.halving["earlier_runs"]] == list(range(rung))
        assert all(e["status"] == "pruned" for e in r.halving["earlier_runs"])
        if r.status == "pruned":
            assert r.throughput.train_steps == r.stopped_at_step and r.stopped_value == _value_at(r, r.stopped_at_step)
            assert "successive halving" in r.reason and not r.metrics
    # rung 1 took the best 2 of the 6 scores at step 2; rung 2 the better of those 2 at step 6
    at_2 = {r.trial_number: r.stopped_value if r.stopped_at_step == 2 else r.halving["earlier_runs"][0]["stopped_value"]
            for r in search}
    went_on = {r.trial_number for r in search if r.halving["rung"] >= 1}
    assert len(went_on) == 2 and min(at_2[n] for n in went_on) >= max(v for n, v in at_2.items() if n not in went_on)
    [final] = [r for r in search if r.status == "complete"]
    [other] = [r for r in search if r.stopped_at_step == 6]
    assert final.halving["earlier_runs"][1]["stopped_value"] >= other.stopped_value
    assert final.throughput.train_steps == 18 and final.metrics
    # trained again from step 0 with the same seed, a configuration repeats its lower rung's score
    for r in (final, other):
        assert _value_at(r, 2) == pytest.approx(r.halving["earlier_runs"][0]["stopped_value"], abs=1e-9)
    assert _value_at(final, 6) == pytest.approx(final.halving["earlier_runs"][1]["stopped_value"], abs=1e-9)
    # Optuna holds each rung's runs in a study of its own
    url = store.study_storage_url
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert {STUDY, f"{STUDY}::rung1", f"{STUDY}::rung2"} <= names
    rung1 = optuna.load_study(study_name=f"{STUDY}::rung1", storage=url).trials
    assert sorted(t.user_attrs["harness:config"] for t in rung1) == sorted(went_on)
    assert [t.state.name for t in optuna.load_study(study_name=f"{STUDY}::rung2", storage=url).trials] == ["COMPLETE"]
    # every run's steps are compute spent, the repeated ones too: 6x2 + 2x6 + 18 of 6x18
    [row] = compute_table(records).itertuples()
    assert (row.steps, row.full_steps, row.repeated_steps, row.runs, row.trials) == (42, 108, 10, 9, 6)
    assert "trained 42 of the full grid's 108 steps (39%) (of which 10 repeated" in out
    page = (tmp_path / "reports" / "sha" / "index.html").read_text()
    assert "Compute spent" in page and "runs" in page


@pytest.mark.e2e
def test_a_sha_sweep_killed_mid_bracket_continues_at_its_rung(write_suite, tmp_path):
    suite = write_suite(SUITE.format(name="shakill", trials=6, strategy="sha"))
    folder = tmp_path / "results" / "shakill" / "records"

    def rungs_on_record():
        out = []
        for p in folder.glob("*/trial-*.json"):
            try:
                out.append((json.loads(p.read_text()).get("halving") or {}).get("rung"))
            except ValueError:  # being written
                pass
        return out

    args = _run_until_killed(suite, tmp_path, lambda: 1 in rungs_on_record())  # the first run of rung 1 on record
    store = FileRecordStore(tmp_path / "results" / "shakill")
    url = store.study_storage_url
    first = {t.number: dict(t.intermediate_values) for t in optuna.load_study(study_name=STUDY, storage=url).trials}
    assert len(first) == 6
    rerun = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout
    # rung 0 was not run again: the same six trials, with their scores
    assert {t.number: dict(t.intermediate_values)
            for t in optuna.load_study(study_name=STUDY, storage=url).trials} == first
    search = [r for r in store.load_all() if r.phase == "search"]
    assert len(search) == 6 and Counter(r.status for r in search)["complete"] == 1
    assert Counter(r.halving["rung"] for r in search) == {0: 4, 1: 1, 2: 1}
    # each configuration's runs before its latest are carried (a run lost in the kill among them)
    [final] = [r for r in search if r.status == "complete"]
    assert [e["rung"] for e in final.halving["earlier_runs"] if e["status"] == "pruned"] == [0, 1]


@pytest.mark.parametrize("search, words", [
    ("strategy: asha, min_steps: 2, reduction_factor: 3, rung_max_length: [48, 64]", "only search.strategy sha"),
    ("strategy: sha, min_steps: 2, reduction_factor: 3, rung_max_length: [48]", "one length per rung"),
    ("strategy: sha, min_steps: 2, reduction_factor: 3, rung_max_length: [64, 48]", "must not fall"),
])
def test_validate_explains_rung_lengths_that_cannot_work(write_suite, capsys, search, words):
    text = SUITE.format(name="v", trials=2, strategy="asha").replace(
        "strategy: asha, min_steps: 2, reduction_factor: 3", search)
    assert main(["validate", str(write_suite(text))]) == 2
    err = capsys.readouterr().err
    assert re.search(r"suite\.yaml:\d+: search\.rung_max_length", err) and words in err, err


@pytest.mark.e2e
def test_sha_with_rung_lengths_trains_lower_rungs_on_shorter_examples(write_suite, tmp_path, capsys):
    text = SUITE.format(name="shalen", trials=4, strategy="sha").replace(
        "reduction_factor: 3}", "reduction_factor: 3, rung_max_length: [24, 48]}")
    assert _run(write_suite(text), tmp_path) == 0
    out = capsys.readouterr().out
    records = FileRecordStore(tmp_path / "results" / "shalen").load_all()
    search = [r for r in records if r.phase == "search"]
    # 4 configurations at step 2 (24 tokens), the best one straight to the end at the model's 96
    assert Counter((r.status, r.config["model"]["max_length"]) for r in search) == {("pruned", 24): 3,
                                                                                    ("complete", 96): 1}
    [final] = [r for r in search if r.status == "complete"]
    assert [(e["rung"], e["max_length"]) for e in final.halving["earlier_runs"]] == [(0, 24)]
    for r in search:
        for run in [*r.halving["earlier_runs"], {"train_tokens": r.throughput.train_tokens,
                                                 "max_length": r.config["model"]["max_length"],
                                                 "train_steps": r.throughput.train_steps}]:
            assert 0 < run["train_tokens"] <= run["train_steps"] * 8 * run["max_length"]
    [row] = compute_table(records).itertuples()
    assert (row.steps, row.short_steps, row.full_steps) == (4 * 2 + 18, 8, 4 * 18)
    # the full grid's seconds at the full-length run's pace, not the cheaper rungs'
    assert row.full_train_s_est == pytest.approx(final.timing.train_s / 18 * 72)
    assert "8 of them at a shorter rung max_length" in " ".join(out.split())  # as the terminal wraps it


# A tiny classifier's validation accuracy sits at chance early on, the same for every configuration;
# its log-loss of the true label does not.
CLASSIFY = """\
name: {name}
models: [{{source: 'builtin:tiny-bert', max_length: 64}}]
tasks: [{{name: sentiment, kind: classification, data: {{builtin: sentiment, train_size: 96, validation_size: 40, test_size: 32}}}}]
methods: [{{name: lora}}]
search: {{trials_per_cell: 6, seed: 0, sampler: random, strategy: sha, min_steps: 2, reduction_factor: 3{extra}}}
training: {{max_steps: 18, batch_size: 8, eval_batch_size: 40}}
references: false
"""


@pytest.mark.e2e
def test_rungs_judge_classification_by_its_validation_log_loss(write_suite, tmp_path, capsys):
    from harness.plan import plan

    assert _run(write_suite(CLASSIFY.format(name="loss", extra="")), tmp_path) == 0
    out = " ".join(capsys.readouterr().out.split())  # as the terminal wraps it
    store = FileRecordStore(tmp_path / "results" / "loss")
    search = [r for r in store.load_all() if r.phase == "search"]
    assert len(search) == 6 and all(r.config["search"]["rung_metric"] == "log_loss" for r in search)

    def loss_at(r, step):
        return next(h["validation_log_loss"] for h in r.history if h["step"] == step and "validation_log_loss" in h)

    at_2 = {r.trial_number: loss_at(r, 2) for r in search}
    assert len(set(at_2.values())) == 6  # a continuous score: no ties for successive halving to break
    for r in search:
        if r.status == "pruned":
            assert r.stopped_metric == "log_loss" and r.stopped_value == loss_at(r, r.stopped_at_step)
            assert "validation log_loss=" in r.reason
    # the lowest losses at step 2 went on (accuracy is maximized; the loss was reported negated)
    went_on = {r.trial_number for r in search if r.halving["rung"] >= 1}
    assert len(went_on) == 2 and max(at_2[n] for n in went_on) < min(v for n, v in at_2.items() if n not in went_on)
    study = optuna.load_study(study_name="sentiment--tiny-bert--lora", storage=store.study_storage_url)
    assert study.direction.name == "MAXIMIZE"
    assert {t.number: t.intermediate_values[2] for t in study.trials} == {n: -v for n, v in at_2.items()}
    # each rung's cut, by the loss and in standard errors of the difference, in the terminal and the report;
    # the validation curves are of the loss the rungs judged by
    kept = [r for r in search if r.halving["rung"] >= 1]
    last_kept = max(at_2[r.trial_number] for r in kept)
    best_left = min(v for n, v in at_2.items() if n not in went_on)
    se = [next(h["validation_log_loss_se"] for h in r.history if h["step"] == 2) for r in search
          if at_2[r.trial_number] in (last_kept, best_left)]
    apart = (best_left - last_kept) / (se[0] ** 2 + se[1] ** 2) ** 0.5
    line = (f"sentiment · tiny-bert · lora, rung 1 (step 2): kept 2 of 6 by validation log_loss; the last kept "
            f"{last_kept:.4g}, the best left {best_left:.4g}: {apart:.1f} SE apart")
    assert line in out, out
    page = (tmp_path / "reports" / "loss" / "index.html").read_text()
    assert "validation log_loss by step" in page and line.split(":")[0] in page
    # the standard errors stay in the history: the chosen validation scores are the scores alone
    [final] = [r for r in search if r.status == "complete"]
    assert "log_loss" in final.validation_metrics and not any(k.endswith("_se") for k in final.validation_metrics)
    # search.rung_metric: objective judges by accuracy again; a family without a loss falls back to it
    objective = load_suite(write_suite(CLASSIFY.format(name="acc", extra=", rung_metric: objective"))).suite
    assert {(c.rung_metric, c.rung_direction) for c in plan(objective)} == {("accuracy", "maximize")}
    summaries = load_suite(write_suite(SUITE.format(name="s", trials=2, strategy="sha"))).suite
    assert {(c.rung_metric, c.rung_direction) for c in plan(summaries)} == {("rougeL", "maximize")}
