"""`harness init` reads a user's columns into a task kind, checks the data and writes a suite that
validate accepts; where two readings fit it writes nothing and names the flag that settles it."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from harness.cli import main


def jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return path


def init(tmp_path: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["init", *args])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue() + err.getvalue()


def validate(path: Path) -> int:
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        return main(["validate", str(path)])


REVIEWS = [{"review": f"the film number {i} was {'great fun' if i % 2 else 'a dull mess'}",
            "stars": "pos" if i % 2 else "neg", "id": i} for i in range(40)]
QA = [{"question": f"Does drug {i} help?", "context": f"A trial of drug {i} in {i + 20} adults.",
       "answer": ["yes", "no", "maybe"][i % 3]} for i in range(30)]
DIALOGUES = [{"dialogue": f"#Person1#: Hi {i}.\n#Person2#: Hello, how was day {i}?", "summary": f"They greet {i}.",
              "fname": f"d{i}"} for i in range(30)]
PAIRS = [{"prompt": f"Q{i}?", "chosen": f"A helpful answer {i}.", "rejected": f"No. {i}"} for i in range(20)]


@pytest.mark.parametrize("rows, kind, model, columns", [
    (REVIEWS, "classification", "builtin:minilm-l6", {"text": "review", "label": "stars"}),
    (QA, "qa", "builtin:minilm-l6", {}),
    (DIALOGUES, "summarization", "builtin:smollm2-135m", {"document": "dialogue"}),
    (PAIRS, "preference", "builtin:smollm2-135m", {}),
])
def test_init_reads_the_kind_from_the_columns_and_writes_a_valid_suite(tmp_path, monkeypatch, rows, kind, model,
                                                                      columns):
    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "mine-train.jsonl", rows[:-6])
    jsonl(tmp_path / "mine-test.jsonl", rows[-6:])
    code, text = init(tmp_path, "--data", "mine-train.jsonl", "--test", "mine-test.jsonl")
    assert code == 0, text
    suite = tmp_path / "mine.yaml"
    data = yaml.safe_load(suite.read_text())
    task = data["tasks"][0]
    assert task["kind"] == kind and data["models"][0]["source"] == model
    assert task["data"]["files"] == {"train": "mine-train.jsonl", "test": "mine-test.jsonl"}
    assert task["data"].get("columns", {}) == columns
    assert {m["name"] for m in data["methods"]} <= {"full", "lora", "qlora", "bitfit", "ln_tuning"}
    assert len(data["methods"]) >= 3
    assert suite.read_text().startswith("# Written by harness init")
    assert validate(suite) == 0
    # a second init does not overwrite the suite unless asked
    code, text = init(tmp_path, "--data", "mine-train.jsonl", "--test", "mine-test.jsonl")
    assert code == 2 and "--force" in text


def test_init_refuses_to_guess_between_two_readings_and_names_the_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    both = [{**q, "label": "clinical" if i % 2 else "basic"} for i, q in enumerate(QA)]
    jsonl(tmp_path / "train.jsonl", both)
    jsonl(tmp_path / "test.jsonl", both[:5])
    code, text = init(tmp_path, "--data", "train.jsonl", "--test", "test.jsonl")
    assert code == 2 and "two readings fit" in text and "--kind qa" in text and "--kind classification" in text
    assert not (tmp_path / "train.yaml").exists() and not (tmp_path / ".train.yaml.init").exists()
    code, text = init(tmp_path, "--data", "train.jsonl", "--test", "test.jsonl", "--kind", "qa")
    assert code == 0, text
    two_labels = [{**r, "mood": "up" if r["id"] % 3 else "down"} for r in REVIEWS]
    jsonl(tmp_path / "r.jsonl", two_labels)
    code, text = init(tmp_path, "--data", "r.jsonl", "--test", "test.jsonl", "--out", "r.yaml")
    assert code == 2 and "--column label=COLUMN" in text and "stars" in text and "mood" in text


def test_init_stops_at_bad_rows_and_drops_them_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [dict(r) for r in REVIEWS]
    rows[7]["review"] = None
    jsonl(tmp_path / "train.jsonl", rows)
    jsonl(tmp_path / "test.jsonl", REVIEWS[:6])
    code, text = init(tmp_path, "--data", "train.jsonl", "--test", "test.jsonl")
    assert code == 2 and "train.jsonl:8: review: (text) is null" in text and "--on-bad-rows drop" in text
    assert not (tmp_path / "train.yaml").exists()
    code, text = init(tmp_path, "--data", "train.jsonl", "--test", "test.jsonl", "--on-bad-rows", "drop")
    assert code == 0, text
    assert yaml.safe_load((tmp_path / "train.yaml").read_text())["tasks"][0]["data"]["on_bad_rows"] == "drop"
    code, text = init(tmp_path, "--data", "train.jsonl")
    assert code == 2 and "--test" in text
