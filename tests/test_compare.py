"""`harness compare` on synthetic results with known effects, and seeds in the leaderboard."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from harness.cli import main
from harness.records.store import RecordStore
from harness.records.synthetic import make_record
from harness.report.leaderboard import leaderboard


def write_results(folder, accuracies: dict[str, list[float]], peak_mib: float = 500.0, tokens_per_s: float = 1000.0):
    store = RecordStore(folder)
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
    other = RecordStore(tmp_path / "other")
    other.write(make_record(method="full"))
    code, text = compare(tmp_path, base, tmp_path / "other", capsys)
    assert code == 2 and "no cells in common" in text and "Traceback" not in text


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
    assert board.loc["ia3", "tied_with_best"] is True  # a paired t-test cannot tell ia3 from lora
    assert board.loc["bitfit", "tied_with_best"] is False
