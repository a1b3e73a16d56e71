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
from harness.records.store import RecordStore
from harness.report.compute import compute_table
from harness.runner.plan import evaluation_steps, rungs

# Summaries by a tiny random decoder: their validation ROUGE-L after a few steps differs from trial to
# trial (a continuous score; a tiny classifier sits at chance, tied, and successive halving promotes
# ties), so successive halving stops some of the 6 trials at a rung.
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


def test_asha_evaluates_at_the_rungs_and_records_where_a_trial_stopped(write_suite, tmp_path, capsys):
    suite = write_suite(SUITE.format(name="asha", trials=6, strategy="asha"))
    assert _run(suite, tmp_path) == 0
    out = capsys.readouterr().out
    records = RecordStore(tmp_path / "results" / "asha").load_all()
    search = [r for r in records if r.phase == "search"]
    assert len(search) == 6 and {r.status for r in search} <= {"complete", "pruned"}
    pruned = [r for r in search if r.status == "pruned"]
    assert pruned, [(r.trial_number, r.history) for r in search]
    for r in search:
        steps = [h["step"] for h in r.history if KEY in h]
        # validation ran at the rungs and nowhere else in the loop (the final score is taken apart)
        assert steps and set(steps) <= {2, 6}, steps
        assert r.config["search"] == {"strategy": "asha", "rungs": [2, 6]}
    for r in pruned:
        assert r.stopped_at_step in (2, 6) and r.throughput.train_steps == r.stopped_at_step
        last = [h for h in r.history if KEY in h][-1]
        assert last["step"] == r.stopped_at_step and last[KEY] == r.stopped_value
        assert r.failed_phase == "train" and not r.metrics  # never scored on test
        assert r.timing.train_s > 0
    for r in search:
        if r.status == "complete":
            assert r.throughput.train_steps == 18 and r.metrics
    # what Optuna saw is what the records say
    study = optuna.load_study(study_name=STUDY,
                              storage=RecordStore(tmp_path / "results" / "asha").study_storage_url)
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


def test_a_sweep_killed_mid_bracket_continues_with_the_trials_it_had(write_suite, tmp_path):
    suite = write_suite(SUITE.format(name="kill", trials=6, strategy="asha"))
    args = [sys.executable, "-m", "harness.cli", "run", str(suite), "--quiet", "--results", str(tmp_path / "results"),
            "--reports", str(tmp_path / "reports")]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    folder = tmp_path / "results" / "kill" / "records"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(folder.glob("*/trial-*.json"))) < 3:
        assert run.poll() is None, run.stdout.read()
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    store = RecordStore(tmp_path / "results" / "kill")
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
