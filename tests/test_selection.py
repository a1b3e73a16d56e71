"""Honest answers: choices read the validation split only and the test split only reports; fresh
confirmation seeds; a resumed search with a new best is confirmed afresh; each method's defaults
are its first trial; a trial over its time limit is a `timeout` record; baseline rows; split checks."""

from __future__ import annotations

import json
import random

import optuna
import pytest

from harness.cli import main
from harness.records.store import FileRecordStore
from harness.spec import Suite
from harness.plan import confirm_seeds, search_seed

WORDS = {"positive": ["wonderful", "superb", "lovely"], "negative": ["terrible", "awful", "boring"]}


def _write_split(path, n: int, seed: int, invert: bool = False) -> None:
    """One clear sentiment word per example; invert: the labels flipped (test only, below)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            label = "positive" if i % 2 == 0 else "negative"
            text = f"the film was {rng.choice(WORDS[label])}"
            shown = {"positive": "negative", "negative": "positive"}[label] if invert else label
            f.write(json.dumps({"text": text, "label": shown}) + "\n")


SUITE = """\
name: honest
models: [{{source: 'builtin:tiny-bert', max_length: 16}}]
tasks:
  - name: words
    kind: classification
    data: {{files: {{train: train.jsonl, validation: validation.jsonl, test: test.jsonl}}}}
methods:
  - name: lora
    params: {{learning_rate: 0.000001}}
    search: {{learning_rate: {{choices: [0.000001, 0.01]}}}}
search: {{trials_per_cell: {trials}, sampler: random, seed: {seed}, strategy: none}}
confirm: {{seeds: {confirm}}}
training: {{max_steps: 30, batch_size: 16, eval_batch_size: 64}}
references: false
"""


def _run(suite, tmp_path, capsys):
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    out = capsys.readouterr()
    return code, out


@pytest.fixture
def inverted(tmp_path):
    """Validation and test favour opposite configurations: test labels are the validation's, inverted."""
    _write_split(tmp_path / "train.jsonl", 160, 1)
    _write_split(tmp_path / "validation.jsonl", 40, 2)
    _write_split(tmp_path / "test.jsonl", 40, 3, invert=True)
    return tmp_path


@pytest.mark.e2e
def test_the_choice_is_the_validation_winner_even_where_test_disagrees(inverted, write_suite, tmp_path, capsys):
    suite = write_suite(SUITE.format(trials=2, seed=3, confirm=0))
    code, out = _run(suite, tmp_path, capsys)
    assert code == 0, out.err
    records = {r.trial_number: r for r in FileRecordStore(tmp_path / "r" / "honest").load_all()}
    assert records[0].params["learning_rate"] == 1e-6  # trial 0: the fixed value (the suite's "default")
    assert records[1].params["learning_rate"] == 0.01
    learned, idle = records[1], records[0]
    assert learned.validation_metrics["accuracy"] > idle.validation_metrics["accuracy"]
    assert learned.metrics["accuracy"] < idle.metrics["accuracy"]  # the test split says the opposite
    # every choice read validation: Optuna's best, the leaderboard's row
    study = optuna.load_study(study_name="words--tiny-bert--lora", storage=FileRecordStore(tmp_path / "r" / "honest").study_storage_url)
    assert study.best_trial.number == 1
    board = json.loads((tmp_path / "p" / "honest" / "leaderboard.json").read_text())
    [row] = [b for b in board if b["method"] == "lora"]
    assert row["trial"] == 1 and row["objective"] == learned.metrics["accuracy"]
    assert learned.validation_source == {"origin": "given", "size": 40}


@pytest.mark.e2e
def test_resumed_search_with_a_new_best_is_confirmed_afresh(inverted, write_suite, tmp_path, capsys):
    suite = write_suite(SUITE.format(trials=1, seed=3, confirm=2))
    assert _run(suite, tmp_path, capsys)[0] == 0
    store = FileRecordStore(tmp_path / "r" / "honest")
    first = store.load_all()
    assert sorted((r.phase, r.trial_number, r.seed) for r in first) == [
        ("confirm", 0, 1), ("confirm", 0, 2), ("search", 0, 0)]  # fresh seeds, never the search seed 0
    suite.write_text(suite.read_text().replace("trials_per_cell: 1", "trials_per_cell: 2"))
    assert _run(suite, tmp_path, capsys)[0] == 0
    after = store.load_all()
    assert sorted((r.phase, r.trial_number, r.seed) for r in after) == [
        ("confirm", 0, 1), ("confirm", 0, 2), ("confirm", 1, 1), ("confirm", 1, 2), ("search", 0, 0), ("search", 1, 0)]
    board = json.loads((tmp_path / "p" / "honest" / "leaderboard.json").read_text())
    [row] = [b for b in board if b["method"] == "lora"]
    new = [r.metrics["accuracy"] for r in after if r.phase == "confirm" and r.trial_number == 1]
    assert row["trial"] == 1 and row["seeds"] == 2
    assert row["objective"] == pytest.approx(sum(new) / 2)  # the new best's confirmations only


def test_confirmation_seeds_are_disjoint_from_the_search_seed():
    base = {"name": "s", "models": [{"source": "builtin:tiny-bert"}],
            "tasks": [{"name": "t", "kind": "classification", "data": {"builtin": "sentiment"}}],
            "methods": [{"name": "lora"}]}
    for seeds, k, expected in (([0], 3, [1, 2, 3]), ([7, 7, 3], 2, [3, 8]), ([5, 2], 1, [2]), ([0, 1, 2], 4, [1, 2, 3, 4])):
        suite = Suite.model_validate({**base, "seeds": seeds, "confirm": {"seeds": k}})
        assert confirm_seeds(suite) == expected
        assert search_seed(suite) not in confirm_seeds(suite)


def test_trial_zero_is_the_methods_own_defaults(tiny_suite, tmp_path):
    # a planning detail, read from the plan and an in-memory study: no sweep runs
    from harness.config import load_suite
    from harness.plan import distributions, plan
    from harness.records.studies import StudyKey
    from harness.runner.jobs import make_job
    from harness.runner.study import open_study

    loaded = load_suite(tiny_suite(methods=("lora", "bitfit"), trials=2, steps=2))
    store = FileRecordStore(tmp_path)
    params = {}
    for index, cell in enumerate(plan(loaded.suite)):
        study = open_study(StudyKey(cell.id), cell, index, loaded.suite, store, optuna.storages.InMemoryStorage())
        dists = distributions(cell.space)
        for number in range(cell.budget):
            trial = study.ask(dists)
            job = make_job(loaded, cell, trial_number=number, seed=0, device="cpu", suite_hash="", sampled=trial.params)
            params[(cell.method.name, number)] = job.params
            study.tell(trial, 0.5)
    assert params[("lora", 0)]["learning_rate"] == 3e-3 and params[("lora", 0)]["r"] == 8
    assert params[("bitfit", 0)]["learning_rate"] == 5e-3
    assert params[("lora", 1)]["learning_rate"] != 3e-3  # then the search takes over
    for (method, _), values in params.items():  # the learning rate stays within 5x of the default, either way
        default = {"lora": 3e-3, "bitfit": 5e-3}[method]
        assert default / 5 <= values["learning_rate"] <= default * 5


@pytest.mark.e2e
def test_trial_over_its_time_limit_is_a_timeout_record_and_the_cell_goes_on(tiny_suite, tmp_path, capsys):
    suite = tiny_suite(methods=("  - name: bitfit\n    label: slow\n    params: {batch_size: 64}", "trivial"),
                       trials=1, steps=3000, extra="runner: {trial_timeout_s: 6}\n")
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    records = {r.method: r for r in FileRecordStore(tmp_path / "r" / "tiny").load_all()}
    assert records["slow"].status == "timeout"
    assert "runner.trial_timeout_s (6 s)" in records["slow"].reason
    assert 6 <= records["slow"].timing.total_s < 30
    assert records["trivial"].status == "complete"  # the sweep went on to the next cell
    assert code == 1  # the slow cell has no complete trial


@pytest.mark.e2e
def test_baseline_rows_in_every_leaderboard(write_suite, tmp_path, capsys):
    text = """\
name: refs
models: [{source: 'builtin:tiny-bert', max_length: 32}]
tasks: [{name: sentiment, kind: classification, data: {builtin: sentiment, train_size: 120, test_size: 60}}]
methods: [{name: bitfit}]
search: {trials_per_cell: 1, strategy: none}
training: {max_steps: 4}
"""
    code, out = _run(write_suite(text), tmp_path, capsys)
    assert code == 0, out.err
    records = {r.method: r for r in FileRecordStore(tmp_path / "r" / "refs").load_all()}
    assert set(records) == {"bitfit", "none", "trivial"}
    assert records["none"].trainable_params == 0 and records["none"].throughput.train_steps == 0
    assert records["trivial"].trainable_params == 0 and records["trivial"].memory.peak_bytes >= 0
    # the trivial predictor: the training split's majority class, scored on test and validation
    from harness.tasks.data import load_splits

    spec = Suite.model_validate({"name": "x", "models": [{"source": "builtin:tiny-bert"}], "methods": [{"name": "lora"}],
                                 "tasks": [{"name": "t", "kind": "classification",
                                            "data": {"builtin": "sentiment", "train_size": 120, "test_size": 60}}]})
    from harness.tasks import family_for

    splits, _, _ = load_splits(spec.tasks[0].data, family_for(spec.tasks[0]), tmp_path)
    from collections import Counter

    majority = Counter(splits["train"]["label"]).most_common(1)[0][0]
    expected = sum(label == majority for label in splits["test"]["label"]) / len(splits["test"])
    assert records["trivial"].metrics["accuracy"] == pytest.approx(expected)
    assert "ref" in out.out and "trivial" in out.out and "none" in out.out
    board = json.loads((tmp_path / "p" / "refs" / "leaderboard.json").read_text())
    assert {b["method"]: b["reference"] for b in board} == {"bitfit": False, "none": True, "trivial": True}
    assert [b["rank"] for b in board if b["reference"]] == [None, None]  # shown, not ranked


def test_lead_sentences_for_summarization():
    from harness.tasks.summarization import lead_sentences

    assert lead_sentences("#Person1#: Hi. How are you?\n#Person2#: Fine! And you? Good.") == \
        "#Person1#: Hi. How are you? #Person2#: Fine!"


def test_splits_from_one_source_are_rejected(write_suite, tmp_path, capsys):
    _write_split(tmp_path / "all.jsonl", 20, 1)
    text = SUITE.format(trials=1, seed=0, confirm=0).replace(
        "{train: train.jsonl, validation: validation.jsonl, test: test.jsonl}", "{train: all.jsonl, test: ./all.jsonl}")
    assert main(["validate", str(write_suite(text))]) == 2
    err = capsys.readouterr().err
    assert "tasks[0].data.files.test: the test split reads the same source as the train split" in err
    hub = SUITE.format(trials=1, seed=0, confirm=0).replace(
        "{files: {train: train.jsonl, validation: validation.jsonl, test: test.jsonl}}",
        "{hub: {name: qiaojin/PubMedQA, config: pqa_labeled, splits: {train: train, test: train}}}")
    assert main(["validate", str(write_suite(hub))]) == 2
    assert "tasks[0].data.hub.splits.test: the test split reads the same source as the train split" in capsys.readouterr().err


@pytest.mark.e2e
def test_exact_train_test_duplicates_are_counted_and_flagged(write_suite, tmp_path, capsys):
    _write_split(tmp_path / "train.jsonl", 40, 1)
    _write_split(tmp_path / "validation.jsonl", 10, 2)
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    (tmp_path / "test.jsonl").write_text("\n".join(lines[:5] + ['{"text": "a new film", "label": "positive"}']) + "\n")
    text = SUITE.format(trials=1, seed=0, confirm=0).replace("max_steps: 30", "max_steps: 2")
    code, out = _run(write_suite(text), tmp_path, capsys)
    assert code == 0
    [record] = FileRecordStore(tmp_path / "r" / "honest").load_all()
    assert record.train_test_duplicates == 5  # the five copied rows; the new one is not counted
    assert "warning: 5 test examples also stand in the training split" in out.out


def test_moved_keys_say_where_things_went(write_suite, capsys):
    text = SUITE.format(trials=1, seed=0, confirm=0) + "training: {learning_rate: 0.001}\n"
    text = text.replace("training: {max_steps: 30, batch_size: 16, eval_batch_size: 64}\n", "")
    text = text.replace("search: {trials_per_cell: 1,", "search: {timeout_s: 60, trials_per_cell: 1,")
    assert main(["validate", str(write_suite(text))]) == 2
    err = capsys.readouterr().err
    assert "training.learning_rate: training.learning_rate is not used: each method starts from its own default" in err
    assert "search.timeout_s: search.timeout_s is gone" in err and "runner.trial_timeout_s" in err


def test_old_records_are_read_and_marked_as_chosen_on_test(tmp_path, capsys):
    from harness.records.synthetic import make_record

    folder = tmp_path / "old" / "synthetic"
    store = FileRecordStore(folder)
    for trial, acc in ((0, 0.7), (1, 0.8)):
        path = store.write(make_record(method="lora", trial=trial, accuracy=acc))
        data = json.loads(path.read_text())
        for key in ("validation_metrics", "selection", "validation_source", "train_test_duplicates"):
            data.pop(key)
        data["timing"].pop("validation_s")
        data["schema_version"] = 1
        path.write_text(json.dumps(data))
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "1*" in out and "chosen on its test score" in out
    [record] = [r for r in store.load_all() if r.trial_number == 1]
    assert record.selection == "test" and record.selection_score == 0.8


def test_paired_difference_interval():
    import pandas as pd
    from scipy import stats

    from harness.report.leaderboard import paired_difference

    a = pd.Series([0.80, 0.82, 0.79], index=[1, 2, 3])
    b = pd.Series([0.85, 0.86, 0.86, 0.9], index=[1, 2, 3, 4])  # seed 4 has no pair
    mean, low, high, p, n = paired_difference(a, b)
    diffs = [-0.05, -0.04, -0.07]
    half = stats.t.ppf(0.975, 2) * stats.tstd(diffs) / 3 ** 0.5
    assert n == 3 and mean == pytest.approx(sum(diffs) / 3)
    assert (low, high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert 0 < p < 0.05
