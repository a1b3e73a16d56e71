"""The record store: unreadable records give a clean error naming the file, --skip-bad reports the
rest, every schema version upgrades, a newer one is refused; CSV exports are spreadsheet-safe."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.records.schema import SCHEMA_VERSION, UPGRADES, upgrade
from harness.records.store import RecordStore
from harness.records.synthetic import make_record


def _results(tmp_path):
    store = RecordStore(tmp_path / "results" / "synthetic")
    for method in ("lora", "bitfit", "ia3"):
        store.write(make_record(method=method))
    return store


BAD = {
    "truncated": lambda text: text[: len(text) // 2],
    "unknown-field": lambda text: text.replace('"suite":', '"colour": "red", "suite":', 1),
    "wrong-type": lambda text: text.replace('"trial_number": 0', '"trial_number": "zero"'),
    "newer-version": lambda text: text.replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 99'),
    "not-an-object": lambda text: "[1, 2]",
}
WORDS = {"truncated": "not valid JSON", "unknown-field": "unknown field 'colour'",
         "wrong-type": "trial_number", "newer-version": "written by a newer harness", "not-an-object": "not a JSON object"}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["report", "compare", "trend"])
def test_unreadable_record_is_a_clean_error_naming_the_file(case, command, tmp_path, capsys):
    store = _results(tmp_path)
    victim = store.root / "records" / "sentiment--tiny--bitfit" / "trial-0000.json"
    victim.write_text(BAD[case](victim.read_text()))
    if command == "report":
        argv = ["report", str(store.root), "--out", str(tmp_path / "rep")]
    elif command == "compare":
        other = RecordStore(tmp_path / "base" / "synthetic")
        other.write(make_record(method="lora"))
        argv = ["compare", str(other.root), str(store.root), "--out", str(tmp_path / "cmp")]
    else:
        argv = ["trend", str(tmp_path / "results"), "--out", str(tmp_path / "trend")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and WORDS[case] in err
    assert "Traceback" not in err


def test_report_skip_bad_reports_the_rest_and_lists_what_it_skipped(tmp_path, capsys):
    store = _results(tmp_path)
    victim = store.root / "records" / "sentiment--tiny--bitfit" / "trial-0000.json"
    victim.write_text("{")
    assert main(["report", str(store.root), "--out", str(tmp_path / "rep"), "--skip-bad"]) == 0
    out = capsys.readouterr()
    assert f"skipped: {victim}" in out.err
    board = json.loads((tmp_path / "rep" / "leaderboard.json").read_text())
    assert sorted(row["method"] for row in board) == ["ia3", "lora"]
    assert victim.read_text() == "{"  # nothing rewritten


def test_every_older_schema_version_has_an_upgrade():
    assert sorted(UPGRADES) == list(range(1, SCHEMA_VERSION))
    record = json.loads(make_record().model_dump_json())
    assert upgrade(dict(record)) == record


def test_csv_export_quotes_formulas(tmp_path):
    store = RecordStore(tmp_path / "results" / "s")
    store.write(make_record(method="=HYPERLINK(\"http://evil\")"))
    store.write(make_record(method="+lora"))
    assert main(["report", str(store.root), "--out", str(tmp_path / "rep")]) == 0
    csv = (tmp_path / "rep" / "leaderboard.csv").read_text()
    assert "'=HYPERLINK" in csv and "'+lora" in csv
    assert "\n=" not in csv and ",=" not in csv and ",+" not in csv
