"""`harness compare` on synthetic results with known effects, and seeds in the leaderboard."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from harness.cli import main
from harness.records.store import FileRecordStore
from harness.records.synthetic import make_record
from harness.report.leaderboard import leaderboard


def write_results(folder, accuracies: dict[str, list[float]], peak_mib: float = 500.0, tokens_per_s: float = 1000.0):
    store = FileRecordStore(folder)
    for method, accs in accuracies.items():
        store.write(make_record(method=method, trial=0, accuracy=max(accs), peak_mib=peak_mib,
                                tokens_per_s=tokens_per_s))
        for seed, acc in enumerate(accs):
            store.write(make_record(method=method, trial=0, seed=seed, accuracy=acc, phase="confirm",
                                    peak_mib=peak_mib, tokens_per_s=tokens_per_s))
    return folder


def compare(tmp_path, base, cand, capsys):
    code = main(["compare", str(base), str(cand), "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    return code, out.out + out.err


def verdicts(tmp_path) -> dict[tuple[str, str], str]:
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    return {(c.get("classname"), c.get("name")): "regressed" if c.find("failure") is not None
            else c.find("system-out").text.rsplit(": ", 1)[1] for c in root.iter("testcase")}


BASE = {"lora": [0.90, 0.91, 0.89], "bitfit": [0.85, 0.80, 0.90]}


def test_real_drop_is_flagged_exit_1(tmp_path, capsys):
    base = write_results(tmp_path / "base", BASE)
    cand = write_results(tmp_path / "cand", {"lora": [0.80, 0.81, 0.79], "bitfit": [0.86, 0.79, 0.88]})
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 1
    v = verdicts(tmp_path)
    assert v[("sentiment--tiny--lora", "quality")] == "regressed"
    assert v[("sentiment--tiny--bitfit", "quality")] == "unchanged"  # inside the seed spread
    assert "1 regressed" in text
    html = (tmp_path / "out" / "index.html").read_text()
    assert "regressed" in html and "sentiment--tiny--lora" in html


def test_change_inside_seed_spread_is_unchanged_exit_0(tmp_path, capsys):
    base = write_results(tmp_path / "base", BASE)
    cand = write_results(tmp_path / "cand", {"lora": [0.895, 0.905, 0.885], "bitfit": [0.83, 0.79, 0.91]})
    code, _ = compare(tmp_path, base, cand, capsys)
    assert code == 0
    assert set(verdicts(tmp_path).values()) == {"unchanged"}


def test_improvement_is_reported(tmp_path, capsys):
    base = write_results(tmp_path / "base", BASE)
    cand = write_results(tmp_path / "cand", {"lora": [0.95, 0.96, 0.94], "bitfit": [0.85, 0.80, 0.90]},
                         tokens_per_s=2000.0)
    code, _ = compare(tmp_path, base, cand, capsys)
    assert code == 0
    v = verdicts(tmp_path)
    assert v[("sentiment--tiny--lora", "quality")] == "improved"
    assert v[("sentiment--tiny--lora", "train_tokens_per_s")] == "improved"  # equal seeds: tolerance decides


def test_memory_growth_beyond_tolerance_regresses(tmp_path, capsys):
    base = write_results(tmp_path / "base", BASE)
    cand = write_results(tmp_path / "cand", BASE, peak_mib=600.0)  # +20% > memory_rel 5%
    code, _ = compare(tmp_path, base, cand, capsys)
    assert code == 1
    assert verdicts(tmp_path)[("sentiment--tiny--lora", "peak_memory_mib")] == "regressed"


def test_bad_input_exits_2(tmp_path, capsys):
    base = write_results(tmp_path / "base", BASE)
    code, text = compare(tmp_path, base, tmp_path / "missing", capsys)
    assert code == 2 and "results folder not found" in text
    other = FileRecordStore(tmp_path / "other")
    other.write(make_record(method="full"))
    code, text = compare(tmp_path, base, tmp_path / "other", capsys)
    # no cell in common: each baseline cell is missing (a regression), the candidate's is new
    assert code == 1 and "2 missing" in text and "1 new" in text and "Traceback" not in text


def test_leaderboard_seed_means_intervals_and_ties():
    records = []
    for method, accs in {"lora": [0.90, 0.92, 0.91], "ia3": [0.89, 0.93, 0.90], "bitfit": [0.70, 0.71, 0.72]}.items():
        records.append(make_record(method=method, accuracy=max(accs)))
        records += [make_record(method=method, seed=s, accuracy=a, phase="confirm") for s, a in enumerate(accs)]
    board = leaderboard(records).set_index("method")
    assert board.loc["lora", "objective"] == pytest.approx(0.91)
    assert board.loc["lora", "seeds"] == 3
    assert board.loc["lora", "ci_low"] < 0.91 < board.loc["lora", "ci_high"]
    assert board.loc["lora", "rank"] == 1
    # ia3 - lora per seed: -0.01, +0.01, -0.01: its 90% interval holds zero and reaches past +-0.01
    assert board.loc["ia3", "verdict"] == "undecided" and board.loc["ia3", "more_seeds"] > 0
    assert board.loc["bitfit", "verdict"] == "worse" and board.loc["lora", "verdict"] == "best"
    wider = leaderboard(records, tolerance=0.05).set_index("method")  # a team that accepts 5 points
    assert wider.loc["ia3", "verdict"] == "equivalent" and wider.loc["bitfit", "verdict"] == "worse"


# --- nightly verdicts (issue: no false alarms from tight seeds, no silent passes) -------------------

def _night(folder, cells: dict, fingerprint="synthetic", env=None, suite_text=None, **extra):
    """cells: method -> list of (seed, accuracy, peak MiB, tokens/s) confirmation runs, or a status."""
    store = FileRecordStore(folder)
    for method, runs in cells.items():
        if isinstance(runs, str):  # every trial ended badly
            store.write(make_record(method=method, status=runs, reason=f"synthetic {runs} reason",
                                    fingerprint=fingerprint, env=env))
            continue
        store.write(make_record(method=method, accuracy=runs[0][1], fingerprint=fingerprint, env=env, **extra))
        for seed, acc, mib, tps in runs:
            store.write(make_record(method=method, seed=seed, accuracy=acc, peak_mib=mib, tokens_per_s=tps,
                                    phase="confirm", fingerprint=fingerprint, env=env, **extra))
    if suite_text:
        (folder / "suite.yaml").write_text(suite_text)
    return folder


def test_tight_seeds_do_not_turn_a_tiny_memory_change_into_a_regression(tmp_path, capsys):
    base = _night(tmp_path / "b", {"lora": [(1, 0.90, 812.0, 1000), (2, 0.91, 812.1, 1000), (3, 0.90, 812.0, 1000)]})
    cand = _night(tmp_path / "c", {"lora": [(1, 0.90, 814.0, 1000), (2, 0.91, 814.1, 1000), (3, 0.90, 814.0, 1000)]})
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 0
    v = verdicts(tmp_path)
    assert v[("sentiment--tiny--lora", "peak_memory_mib")] == "unchanged"  # +0.25% under memory_rel 5%
    assert "larger of tolerance 0.05 relative" in (tmp_path / "out" / "junit.xml").read_text()


@pytest.mark.parametrize("status", ["crashed", "failed", "oom", "timeout"])
def test_a_cell_that_did_not_complete_tonight_is_a_regression(status, tmp_path, capsys):
    runs = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]
    base = _night(tmp_path / "b", {"lora": runs, "bitfit": runs})
    cand = _night(tmp_path / "c", {"lora": runs, "bitfit": status})
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 1
    assert verdicts(tmp_path)[("sentiment--tiny--bitfit", "all")] == "regressed"  # junit: a failure
    assert "missing" in text and f"{status}: synthetic {status} reason" in text


def test_a_cell_new_in_the_candidate_is_new(tmp_path, capsys):
    runs = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]
    code, text = compare(tmp_path, _night(tmp_path / "b", {"lora": runs}),
                         _night(tmp_path / "c", {"lora": runs, "ia3": runs}), capsys)
    assert code == 0 and verdicts(tmp_path)[("sentiment--tiny--ia3", "all")] == "new"


def test_other_data_is_refused_unless_allowed_and_then_said(tmp_path, capsys):
    runs = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]
    base = _night(tmp_path / "b", {"lora": runs})
    cand = _night(tmp_path / "c", {"lora": runs}, fingerprint="other-data")
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 2 and "data of task sentiment differ (fingerprint synthetic -> other-data)" in text
    assert "--allow-mismatch" in text and "Traceback" not in text
    code = main(["compare", str(base), str(cand), "--out", str(tmp_path / "out"), "--allow-mismatch"])
    text = capsys.readouterr().out
    assert code == 0 and "compared despite --allow-mismatch" in text
    assert "compared despite" in (tmp_path / "out" / "junit.xml").read_text()
    assert "Compared despite --allow-mismatch" in (tmp_path / "out" / "index.html").read_text()


def test_another_suite_setting_is_a_mismatch_but_budget_and_seeds_are_not(tmp_path, capsys):
    runs = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]
    text = "name: n\ntraining: {max_steps: 60}\nsearch: {trials_per_cell: 3}\nconfirm: {seeds: 3}\n"
    base = _night(tmp_path / "b", {"lora": runs}, suite_text=text)
    same = _night(tmp_path / "c", {"lora": runs}, suite_text=text.replace("trials_per_cell: 3", "trials_per_cell: 5")
                  .replace("seeds: 3", "seeds: 2"))
    assert compare(tmp_path, base, same, capsys)[0] == 0
    other = _night(tmp_path / "d", {"lora": runs}, suite_text=text.replace("max_steps: 60", "max_steps: 30"))
    code, out = compare(tmp_path, base, other, capsys)
    assert code == 2 and "suite setting 'training.max_steps' differs: 60 -> 30" in out
    # one list of the settings that may change (records/store.py CHANGEABLE_KEYS), shared with resume:
    # the budget may, the rest of the search may not
    searched = _night(tmp_path / "e", {"lora": runs}, suite_text=text.replace("trials_per_cell: 3",
                                                                              "trials_per_cell: 3, seed: 7"))
    code, out = compare(tmp_path, base, searched, capsys)
    assert code == 2 and "suite setting 'search.seed' differs: None -> 7" in out


def test_another_device_judges_quality_only(tmp_path, capsys):
    from harness.records.synthetic import ENV

    runs = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]
    base = _night(tmp_path / "b", {"lora": runs})
    cand = _night(tmp_path / "c", {"lora": [(1, 0.90, 900, 3000), (2, 0.91, 900, 3000)]},
                  env={**ENV, "gpus": ["NVIDIA H100 80GB HBM3"], "driver": "550"})
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 0
    v = verdicts(tmp_path)
    assert v[("sentiment--tiny--lora", "quality")] == "unchanged"
    for metric in ("peak_memory_mib", "train_tokens_per_s", "train_s"):
        assert v[("sentiment--tiny--lora", metric)] == "not comparable"
    assert "device differs" in text and "changed: GPUs: [] -> ['NVIDIA H100 80GB HBM3']" in text


def test_a_metric_defined_differently_is_not_comparable(tmp_path, capsys):
    base = _night(tmp_path / "b", {"lora": [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]})
    for path in (tmp_path / "b").rglob("*.json"):  # records of a harness whose peak memory meant another thing
        data = json.loads(path.read_text())
        data["definitions"]["peak_memory"] = 0
        path.write_text(json.dumps(data))
    cand = _night(tmp_path / "c", {"lora": [(1, 0.90, 400, 1000), (2, 0.91, 400, 1000)]})
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 0 and verdicts(tmp_path)[("sentiment--tiny--lora", "peak_memory_mib")] == "not comparable"
    assert "peak_memory is defined differently" in text


@pytest.mark.parametrize("test_size, drop, expected", [(200, 0.05, "unchanged"), (5000, 0.05, "regressed"),
                                                       (200, 0.20, "regressed")])
def test_single_run_accuracy_threshold_follows_the_test_size(test_size, drop, expected, tmp_path, capsys):
    store_b, store_c = FileRecordStore(tmp_path / "b"), FileRecordStore(tmp_path / "c")
    store_b.write(make_record(method="lora", accuracy=0.80, test_size=test_size))
    store_c.write(make_record(method="lora", accuracy=0.80 - drop, test_size=test_size))
    compare(tmp_path, tmp_path / "b", tmp_path / "c", capsys)
    assert verdicts(tmp_path)[("sentiment--tiny--lora", "quality")] == expected
    # a 200-example accuracy of 0.8 is known to about +/-0.03 (binomial); two of them differ by
    # less than ~0.16 at the 99.5% level by chance alone; 5000 examples: ~0.03
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert "test-set sampling error" in junit


def test_tolerances_come_from_the_baseline_suite(tmp_path, capsys):
    runs_b = [(1, 0.90, 500, 1000), (2, 0.90, 500, 1000)]
    runs_c = [(1, 0.90, 500, 600), (2, 0.90, 500, 600)]  # -40% tokens/s
    base = _night(tmp_path / "b", {"lora": runs_b}, suite_text="name: n\ncompare: {throughput_rel: 0.5}\n")
    cand = _night(tmp_path / "c", {"lora": runs_c}, suite_text="name: n\ncompare: {throughput_rel: 0.01}\n")
    assert compare(tmp_path, base, cand, capsys)[0] == 0  # the baseline's 50% tolerance holds
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path / "out"), "--throughput-rel", "0.25"]) == 1


def test_trend_marks_the_night_compare_would_flag(tmp_path, capsys):
    good = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000), (3, 0.90, 500, 1000)]
    bad = [(1, 0.60, 500, 1000), (2, 0.61, 500, 1000), (3, 0.60, 500, 1000)]
    for night, runs in (("2026-11-26", good), ("2026-11-27", good), ("2026-11-28", bad)):
        _night(tmp_path / "nightly" / night / "synthetic", {"lora": runs})
    assert main(["trend", str(tmp_path / "nightly"), "--out", str(tmp_path / "trend")]) == 0
    html = (tmp_path / "trend" / "index.html").read_text()
    assert "2026-11-28: sentiment--tiny--lora · quality" in html
    assert "2026-11-27: sentiment--tiny--lora" not in html


def test_speed_from_a_busy_host_is_not_judged(tmp_path, capsys):
    runs = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]
    base = _night(tmp_path / "b", {"lora": runs})
    cand = _night(tmp_path / "c", {"lora": [(1, 0.90, 500, 400), (2, 0.91, 500, 400)]})
    for path in (tmp_path / "c").rglob("*.json"):  # tonight another job shared the cores
        data = json.loads(path.read_text())
        data["host"] = {"other_cpu_share": 0.45, "cpu_count": 2}
        path.write_text(json.dumps(data))
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 0
    v = verdicts(tmp_path)
    assert v[("sentiment--tiny--lora", "train_tokens_per_s")] == "not judged"
    assert v[("sentiment--tiny--lora", "quality")] == "unchanged"
    assert "host busy 45%" in text


def test_a_cell_skipped_as_not_fitting_is_listed_as_skipped(tmp_path, capsys):
    """A cell predicted not to fit (harness estimate) is a 'skipped' verdict with its reason: a failure
    where the baseline ran it (the nightly lost a cell), not one where both nights skipped it."""
    runs = [(1, 0.90, 500, 1000), (2, 0.91, 500, 1000)]
    base = _night(tmp_path / "b", {"lora": runs, "bitfit": runs})
    cand = _night(tmp_path / "c", {"lora": runs, "bitfit": "skipped"})
    code, text = compare(tmp_path, base, cand, capsys)
    assert code == 1 and "1 skipped" in text and "the baseline ran it; synthetic skipped reason" in text
    assert verdicts(tmp_path)[("sentiment--tiny--bitfit", "all")] == "regressed"  # junit: a failure
    both = _night(tmp_path / "b2", {"lora": runs, "bitfit": "skipped"})
    code, text = compare(tmp_path, both, cand, capsys)
    assert code == 0 and "1 skipped" in text
    assert verdicts(tmp_path)[("sentiment--tiny--bitfit", "all")] == "skipped"


def test_a_changed_answer_heads_the_comparison(tmp_path, capsys):
    full = [(1, 0.90, 900.0, 1000), (2, 0.92, 900.0, 1000), (3, 0.91, 900.0, 1000)]
    lora_same = [(1, 0.899, 300.0, 1500), (2, 0.921, 300.0, 1500), (3, 0.909, 300.0, 1500)]
    lora_broken = [(1, 0.70, 300.0, 1500), (2, 0.71, 300.0, 1500), (3, 0.72, 300.0, 1500)]
    text = "name: n\ndecision: {tolerance: 0.02}\n"
    base = _night(tmp_path / "b", {"full": full, "lora": lora_same}, suite_text=text)
    same = _night(tmp_path / "s", {"full": full, "lora": lora_same}, suite_text=text)
    assert "the answer changed" not in compare(tmp_path, base, same, capsys)[1]
    cand = _night(tmp_path / "c", {"full": full, "lora": lora_broken}, suite_text=text)
    code, out = compare(tmp_path, base, cand, capsys)
    assert code == 1 and out.startswith("the answer changed: sentiment · tiny: lora -> full"), out
    assert "The answer changed: sentiment · tiny: lora -&gt; full" in (tmp_path / "out" / "index.html").read_text()
