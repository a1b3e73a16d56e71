"""Seeds until decided (harness/sequential.py, `confirm.seeds: auto`): every method runs min_seeds, then
only the best and the methods undecided against it get more, at planned looks read with a Bonferroni-
corrected interval; by simulation on paired scores with a known truth, wrong verdicts stay at or under
5% per side, and the seeds spent are set against a fixed 10."""

from __future__ import annotations

import random

import pytest

from harness.sequential import LEVEL, level_at, looks, schedule, simulate


def test_the_looks_and_their_level():
    assert looks(3, 10, 3) == [3, 7, 10]
    assert looks(2, 4, 2) == [2, 4]
    assert looks(3, 10, 1) == [10]
    assert looks(5, 5, 3) == [5]
    assert level_at(1) == pytest.approx(LEVEL)
    assert level_at(3) == pytest.approx(1 - 0.10 / 3)


def test_every_method_runs_the_minimum_and_a_look_waits_for_its_seeds():
    scores = {"a": {0: 0.8, 1: 0.81, 2: 0.79}, "b": {0: 0.5, 1: 0.51}}
    plan = schedule(scores, {"a": 3, "b": 2}, [3, 7, 10], 0.01)
    assert plan.target == {"a": 3, "b": 3} and not plan.settled  # b's third seed still runs
    assert plan.why["b"][2].startswith("look 1 of 3: every method runs the first 3 seeds")


def test_only_the_best_and_the_undecided_get_more_seeds_and_each_says_why():
    scores = {"best": {0: 0.80, 1: 0.82, 2: 0.81},
              "close": {0: 0.81, 1: 0.81, 2: 0.81},  # level on average, but spread over 3 seeds: undecided
              "far": {0: 0.50, 1: 0.52, 2: 0.51}}  # 30 points below, steadily: worse at once
    plan = schedule(scores, {m: 3 for m in scores}, [3, 7, 10], 0.01)
    assert plan.verdicts == {"best": "best", "close": "undecided", "far": "worse"}
    assert plan.target == {"best": 7, "close": 7, "far": 3} and not plan.settled
    assert plan.why["close"][5] == "look 2 of 3: undecided against the best (best) at look 1, on validation"
    assert plan.why["best"][3].startswith("look 2 of 3: the best at look 1 (close undecided")
    assert plan.look["close"][6] == 2 and 6 not in plan.look["far"]
    # at look 2 the seeds decide it: no more, and the plan has ended
    more = {**scores, "close": {**scores["close"], 3: 0.81, 4: 0.80, 5: 0.82, 6: 0.81},
            "best": {**scores["best"], 3: 0.81, 4: 0.80, 5: 0.82, 6: 0.81}}
    plan = schedule(more, {"best": 7, "close": 7, "far": 3}, [3, 7, 10], 0.01)
    assert plan.settled and plan.target == {"best": 7, "close": 7, "far": 3}
    assert plan.verdicts["far"] == "worse" and plan.verdicts["close"] != "undecided"


def test_the_last_look_ends_the_rule_however_undecided():
    rng = random.Random(1)
    scores = {"a": {s: 0.8 + rng.gauss(0, 0.05) for s in range(10)}, "b": {s: 0.8 + rng.gauss(0, 0.05) for s in range(10)}}
    plan = schedule(scores, {"a": 10, "b": 10}, [3, 7, 10], 0.01)
    assert plan.settled and plan.target == {"a": 10, "b": 10}


def test_failed_seeds_are_not_scores_and_a_method_with_none_drops_out():
    scores = {"a": {0: 0.8, 1: 0.8, 2: 0.8}, "b": {}}  # every seed of b failed
    plan = schedule(scores, {"a": 3, "b": 3}, [3, 7, 10], 0.01)
    assert plan.settled and plan.target == {"a": 3, "b": 3}


@pytest.mark.parametrize("truth, forbidden", [(0.0, ("worse",)), (0.0, ("better",)),  # truly equal: each side
                                              (-0.01, ("equivalent",)),  # exactly at the tolerance
                                              (-0.03, ("equivalent", "better")),  # truly worse
                                              (0.03, ("equivalent", "worse"))])  # truly better
def test_seeds_until_decided_keep_wrong_verdicts_at_or_under_five_percent(truth, forbidden):
    runs = 1500
    claims, spent = simulate(truth, 0.01, 0.01, "auto", runs, seed=7)
    wrong = sum(c in forbidden for c in claims) / runs
    # 5% per one-sided test, over all three looks (Bonferroni); 1,500 runs' binomial noise is ~0.6 points
    assert wrong <= 0.05 + 0.015, f"{wrong:.3f} wrong at truth {truth}"
    assert all(6 <= s <= 20 for s in spent)  # 3 to 10 seeds each


def test_seeds_until_decided_spend_fewer_seeds_where_the_answer_is_clear():
    claims, spent = simulate(-0.10, 0.01, 0.01, "auto", 300, seed=3)
    assert sum(spent) / len(spent) == 6 and claims.count("worse") == 300  # decided at the first look
    _, spent = simulate(0.0, 0.01, 0.01, "auto", 300, seed=4)
    assert 6 < sum(spent) / len(spent) <= 20  # a near tie takes more looks, never more than a fixed 10 each


# Scores by method and seed (validation and test alike): bitfit steadily 30 points below (worse at the first look), full level
# with lora on average but spread (undecided at the first look, equivalent at the second).
SCORES = {"lora": [0.80, 0.82, 0.81, 0.81, 0.80, 0.82, 0.81, 0.80],
          "full": [0.81, 0.81, 0.81, 0.81, 0.80, 0.82, 0.81, 0.80],
          "bitfit": [0.50, 0.52, 0.51, 0.50, 0.50, 0.50, 0.50, 0.50]}


@pytest.mark.e2e
def test_the_sweep_runs_seeds_until_decided_says_why_and_resumes_to_the_same_plan(tiny_suite, tmp_path, monkeypatch):
    from harness.cli import main
    from harness.records.store import FileRecordStore
    from harness.records.synthetic import make_record
    from harness.runner import loop

    ran = []

    def scored(job, prepared, hooks):  # the trial's work stands in; claims, plan and records are the sweep's
        slot = 0 if job.phase == "search" else job.seed  # confirmation seeds are 1, 2, ... here
        ran.append((job.cell.method_label, job.phase, job.seed))
        record = make_record(suite="tiny", task=job.cell.task_label, model=job.cell.model.label,
                             method=job.cell.method_label, trial=job.trial_number, seed=job.seed, phase=job.phase,
                             accuracy=SCORES[job.cell.method_label][slot])
        return record

    monkeypatch.setattr(loop, "run_inline", scored)
    suite = tiny_suite(methods=("lora", "full", "bitfit"), trials=1, steps=2,
                       extra="runner: {isolation: inline}\nconfirm: {seeds: auto, min_seeds: 3, max_seeds: 7, "
                             "looks: 2}\n")
    args = ["run", str(suite), "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p"), "--quiet"]
    assert main(args) == 0
    records = FileRecordStore(tmp_path / "r" / "tiny").load_all()
    confirmed = {m: sorted(r.seed for r in records if r.phase == "confirm" and r.method == m) for m in SCORES}
    assert confirmed == {"lora": [1, 2, 3, 4, 5, 6, 7], "full": [1, 2, 3, 4, 5, 6, 7], "bitfit": [1, 2, 3]}
    why = {(r.method, r.seed): r.confirmation for r in records if r.phase == "confirm"}
    assert why[("bitfit", 3)]["why"] == "look 1 of 2: every method runs the first 3 seeds"
    assert why[("full", 5)]["why"] == "look 2 of 2: undecided against the best (lora) at look 1, on validation"
    assert why[("lora", 6)]["why"].startswith("look 2 of 2: the best at look 1")
    assert {c["rule"] for c in why.values()} == {"auto"} and all(c["level"] == pytest.approx(0.95) for c in why.values())
    # the report reads the verdicts at the corrected level
    from harness.report.leaderboard import leaderboard

    board = leaderboard(records).set_index("method")
    assert board.loc["bitfit", "verdict"] == "worse" and board.loc["full", "verdict"] == "equivalent"
    assert board.loc["full", "level"] == pytest.approx(0.95)
    # the same command again: the plan replays from the records and the studies, and nothing runs
    ran.clear()
    assert main(args) == 0 and ran == []


@pytest.mark.e2e
def test_which_methods_get_more_seeds_reads_validation_never_test(tiny_suite, tmp_path, monkeypatch):
    """bitfit's test scores are 30 points below lora's (worse at the first look, if test were read); its
    validation scores straddle lora's (undecided): it gets the next look's seeds, because the looks read
    validation, what every choice reads."""
    from harness.cli import main
    from harness.records.store import FileRecordStore
    from harness.records.synthetic import make_record
    from harness.runner import loop

    validation = {"lora": [0.80, 0.82, 0.81, 0.81, 0.80, 0.82, 0.81, 0.80],
                  "bitfit": [0.84, 0.77, 0.83, 0.79, 0.80, 0.82, 0.81, 0.80]}

    def scored(job, prepared, hooks):
        slot = 0 if job.phase == "search" else job.seed
        method = job.cell.method_label
        return make_record(suite="tiny", task=job.cell.task_label, model=job.cell.model.label, method=method,
                           trial=job.trial_number, seed=job.seed, phase=job.phase, accuracy=SCORES[method][slot],
                           validation=validation[method][slot])

    monkeypatch.setattr(loop, "run_inline", scored)
    suite = tiny_suite(methods=("lora", "bitfit"), trials=1, steps=2,
                       extra="runner: {isolation: inline}\nconfirm: {seeds: auto, min_seeds: 3, max_seeds: 7, "
                             "looks: 2}\n")
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p"), "--quiet"]) == 0
    records = FileRecordStore(tmp_path / "r" / "tiny").load_all()
    seeds = {m: sorted(r.seed for r in records if r.phase == "confirm" and r.method == m) for m in validation}
    assert seeds == {"lora": [1, 2, 3, 4, 5, 6, 7], "bitfit": [1, 2, 3, 4, 5, 6, 7]}
    why = {(r.method, r.seed): r.confirmation["why"] for r in records if r.phase == "confirm"}
    assert why[("bitfit", 4)] == "look 2 of 2: undecided against the best (lora) at look 1, on validation"
