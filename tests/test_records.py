"""The record store: unreadable records give a clean error naming the file, --skip-bad reports the
rest, every schema version upgrades, a newer one is refused; CSV exports are spreadsheet-safe."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.records.schema import SCHEMA_VERSION, UPGRADES, upgrade
from harness.records.store import FileRecordStore
from harness.records.synthetic import make_record


def _results(tmp_path):
    store = FileRecordStore(tmp_path / "results" / "synthetic")
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
        other = FileRecordStore(tmp_path / "base" / "synthetic")
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
    store = FileRecordStore(tmp_path / "results" / "s")
    store.write(make_record(method="=HYPERLINK(\"http://evil\")"))
    store.write(make_record(method="+lora"))
    assert main(["report", str(store.root), "--out", str(tmp_path / "rep")]) == 0
    csv = (tmp_path / "rep" / "leaderboard.csv").read_text()
    assert "'=HYPERLINK" in csv and "'+lora" in csv
    assert "\n=" not in csv and ",=" not in csv and ",+" not in csv


def test_one_store_interface_opens_a_folder_or_a_postgresql_url(tmp_path):
    from harness.records.pg import PgRecordStore
    from harness.records.store import open_store

    store = open_store(tmp_path / "set")
    assert isinstance(store, FileRecordStore) and not store.has_records() and store.saved_suite() is None
    store.write(make_record(method="lora"))
    store.save_suite("name: s\noutput: {reports_dir: pages}\n")
    again = open_store(str(tmp_path / "set"))
    assert again.has_records() and again.count() == 1 and again.reports_dir().name == "pages"
    assert [r.method for r in again.load_all()] == ["lora"]
    pg = open_store("postgresql://u@localhost/db#nightly")  # opened lazily: no connection yet
    assert isinstance(pg, PgRecordStore) and pg.suite == "nightly" and pg.study_name("c") == "nightly/c"
    assert open_store("postgresql://u@localhost/db", "other").suite == "other"


def test_resume_and_compare_share_one_list_of_settings_that_may_change():
    from harness.records.store import setting_differences

    before = {"name": "a", "search": {"trials_per_cell": 3, "seed": 0}, "confirm": {"seeds": 3},
              "training": {"max_steps": 60}, "output": {"reports_dir": "r"}}
    budget = {**before, "search": {"trials_per_cell": 5, "seed": 0}, "confirm": {"seeds": 5}, "output": {}}
    assert setting_differences(before, budget) == []
    assert setting_differences(before, {**before, "training": {"max_steps": 30}}) == [("training.max_steps", 60, 30)]
    assert setting_differences(before, {**before, "search": {"trials_per_cell": 3, "seed": 1}}) == [("search.seed", 0, 1)]


def test_a_resume_into_a_set_of_another_suite_version_is_refused_naming_the_setting(tmp_path):
    from harness.errors import UserError
    from harness.runner.sweep import check_resumable

    store = FileRecordStore(tmp_path / "set")
    text = "name: s\ntraining: {max_steps: 60}\nsearch: {trials_per_cell: 3}\n"
    check_resumable(store, text)  # nothing saved yet
    store.save_suite(text)
    check_resumable(store, text.replace("max_steps: 60", "max_steps: 30"))  # no records yet: nothing to mix
    store.write(make_record())
    check_resumable(store, text.replace("trials_per_cell: 3", "trials_per_cell: 9"))  # a budget raised resumes
    with pytest.raises(UserError, match=r"differs in training\.max_steps"):
        check_resumable(store, text.replace("max_steps: 60", "max_steps: 30"))


@pytest.mark.parametrize("key", ["sentiment--tiny--lora", "sentiment--tiny--lora::rung2",
                                 "sentiment--tiny--lora::confirm-t0007", "qa@100--m--ia3::rung1"])
def test_a_study_key_has_one_to_string_and_one_from_string(key):
    from harness.records.studies import StudyKey

    parsed = StudyKey.parse(key)
    assert str(parsed) == key
    assert StudyKey.parse("suite/" + key, "suite/") == parsed
    assert parsed.phase == ("confirm" if "::confirm-t" in key else "search")
    assert StudyKey.confirming("c", 7) == StudyKey("c", "confirm", trial=7)
