"""A user's own data files: every everyday fault is found at validate time, named by file:line and
column, exit 2 and no traceback; with data.on_bad_rows: drop the rows are dropped and counted in
the record and on the report; unseen labels are refused unless allowed, and then shown."""

from __future__ import annotations

import codecs
import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from harness.cli import main


def rows(n: int, labels=("pos", "neg"), start: int = 0) -> list[dict]:
    words = ["fine", "dull", "moving", "flat", "bright", "tired"]
    return [{"text": f"review {start + i}: the film was {words[i % 6]} and {'good' if i % 2 else 'bad'}",
             "label": labels[i % len(labels)]} for i in range(n)]


def jsonl(path: Path, items: list, raw: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in items]
    for number, text in (raw or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], items: list[list], bom: bool = False, crlf: bool = False) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    writer.writerows(items)
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + buf.getvalue().encode("utf-8"))
    return path


SUITE = """\
name: mine
models: [{{source: builtin:{model}, max_length: {max_length}}}]
tasks:
  - name: t
    kind: {kind}
    data:
      files: {{train: {train}, test: {test}}}
{extra}methods: [{{name: lora}}]
search: {{trials_per_cell: 1, sampler: none}}
training: {{max_steps: 2, batch_size: 4, eval_batch_size: 8}}
references: false
"""


def suite(tmp_path: Path, train: str, test: str, kind="classification", model="tiny-bert", max_length=32,
          data_extra: str = "") -> Path:
    extra = "".join(f"      {line}\n" for line in data_extra.splitlines())
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(model=model, max_length=max_length, kind=kind, train=train, test=test,
                                 extra=extra), encoding="utf-8")
    return path


def validate(path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, out.getvalue() + err.getvalue()


def refused(path: Path, *expected: str) -> str:
    code, text = validate(path)
    assert code == 2, text
    assert "Traceback" not in text
    for piece in expected:
        assert piece in text, f"{piece!r} not in:\n{text}"
    return text


def test_a_truncated_jsonl_line_is_named_by_file_and_line(tmp_path):
    good = rows(60)
    jsonl(tmp_path / "train.jsonl", good, raw={38: json.dumps(good[37])[:25]})
    jsonl(tmp_path / "test.jsonl", rows(10))
    text = refused(suite(tmp_path, "train.jsonl", "test.jsonl"), "train.jsonl:38: not valid JSON")
    assert "cut short" in text and text.count("train.jsonl:") == 1


def test_null_and_non_string_text_are_named_with_their_column(tmp_path):
    items = rows(20)
    items[4]["text"], items[9]["text"], items[11]["text"] = None, 17, "   "
    jsonl(tmp_path / "train.jsonl", items)
    jsonl(tmp_path / "test.jsonl", rows(10))
    text = refused(suite(tmp_path, "train.jsonl", "test.jsonl"), "train.jsonl:5: text: is null",
                   "train.jsonl:10: text: is a number", "train.jsonl:12: text: is empty")
    assert "3 problems" in text


def test_a_spreadsheet_csv_with_byte_order_mark_and_crlf_loads(tmp_path):
    """UTF-8 with a BOM and CRLF line ends: read as the user meant (the header's first name has no
    \\ufeff), validated, and loaded with every row."""
    from harness.config import load_suite
    from harness.tasks import family_for
    from harness.tasks.data import load_splits

    write_csv(tmp_path / "train.csv", ["review", "stars"], [[r["text"], r["label"]] for r in rows(30)],
              bom=True, crlf=True)
    write_csv(tmp_path / "test.csv", ["review", "stars"], [[r["text"], r["label"]] for r in rows(10)],
              bom=True, crlf=True)
    path = suite(tmp_path, "train.csv", "test.csv", data_extra="columns: {text: review, label: stars}")
    code, text = validate(path)
    assert code == 0, text
    loaded = load_suite(path)
    splits, _, report = load_splits(loaded.suite.tasks[0].data, family_for(loaded.suite.tasks[0]), tmp_path)
    assert len(splits["train"]) + len(splits["validation"]) == 30 and len(splits["test"]) == 10
    assert splits["test"]["text"][0] == rows(1)[0]["text"] and not splits["test"]["text"][0].endswith("\r")
    assert report["dropped"] == {} and report["rows"] == {"train": 30, "test": 10}


def test_a_test_label_never_seen_in_train_is_refused_then_counted_when_allowed(tmp_path):
    jsonl(tmp_path / "train.jsonl", rows(20))
    test = rows(10)
    test[3]["label"] = test[6]["label"] = "meh"
    jsonl(tmp_path / "test.jsonl", test)
    refused(suite(tmp_path, "train.jsonl", "test.jsonl"),
            "test.jsonl:4: label: label 'meh' (2 rows) never occurs in the training split", "allow_unseen_labels")
    code, text = validate(suite(tmp_path, "train.jsonl", "test.jsonl", data_extra="allow_unseen_labels: true"))
    assert code == 0, text


def test_max_length_above_the_models_position_limit_names_both_numbers(tmp_path):
    jsonl(tmp_path / "train.jsonl", rows(20))
    jsonl(tmp_path / "test.jsonl", rows(10))
    refused(suite(tmp_path, "train.jsonl", "test.jsonl", max_length=100000),
            "models[0].max_length: max_length 100000 is above the model's position limit 256")


def test_a_file_in_another_encoding_is_named_with_the_encoding_found(tmp_path):
    text = "text,label\n" + "".join(f"caf\u00e9 cr\u00e8me number {i} was fine,pos\nbad {i},neg\n" for i in range(20))
    (tmp_path / "train.csv").write_bytes(text.encode("cp1252"))
    jsonl(tmp_path / "test.jsonl", rows(10))
    (tmp_path / "test.csv").write_text("text,label\n" + "".join(f"t {i},pos\n" for i in range(5)), encoding="utf-8")
    out = refused(suite(tmp_path, "train.csv", "test.csv"), "train.csv:2: not UTF-8", "save it as UTF-8")
    assert "iconv" in out
    (tmp_path / "utf16.csv").write_bytes(codecs.BOM_UTF16_LE + "text,label\nx,pos\n".encode("utf-16-le"))
    refused(suite(tmp_path, "utf16.csv", "test.csv"), "utf16.csv:1: the file is UTF-16 LE")


def test_mixed_label_types_and_ragged_csv_rows(tmp_path):
    items = rows(20, labels=(1, 0))
    items[7]["label"] = "1"
    jsonl(tmp_path / "train.jsonl", items)
    jsonl(tmp_path / "test.jsonl", rows(10, labels=(1, 0)))
    refused(suite(tmp_path, "train.jsonl", "test.jsonl"), "train.jsonl:8: label: a text where the column holds number")
    (tmp_path / "ragged.csv").write_text("text,label\nfine,pos\ntoo,many,fields\nok,neg\n", encoding="utf-8")
    write_csv(tmp_path / "test.csv", ["text", "label"], [["a", "pos"], ["b", "neg"]])
    refused(suite(tmp_path, "ragged.csv", "test.csv"), "ragged.csv:3: has 3 fields where the header has 2")


def test_many_bad_rows_are_listed_a_few_and_counted(tmp_path):
    items = rows(200)
    for i in range(0, 200, 4):
        items[i]["text"] = None
    jsonl(tmp_path / "train.jsonl", items)
    jsonl(tmp_path / "test.jsonl", rows(10))
    text = refused(suite(tmp_path, "train.jsonl", "test.jsonl"), "and 47 more lines like this (empty or non-text)")
    assert text.count("is null") == 3


def test_qa_answer_not_among_its_options_and_preference_pair_that_prefers_nothing(tmp_path):
    qa = [{"question": f"q{i}?", "options": ["red", "blue", "green"], "answer": "B"} for i in range(12)]
    qa[5]["answer"] = "purple"
    jsonl(tmp_path / "qa.jsonl", qa)
    jsonl(tmp_path / "qa_test.jsonl", [{"question": "q?", "options": ["red", "blue"], "answer": "A"}] * 3)
    refused(suite(tmp_path, "qa.jsonl", "qa_test.jsonl", kind="qa", model="tiny-llama"),
            "qa.jsonl:6: answer: answer 'purple' is none of the options")
    pairs = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(10)]
    pairs[2]["rejected"] = pairs[2]["chosen"]
    jsonl(tmp_path / "pairs.jsonl", pairs)
    jsonl(tmp_path / "pairs_test.jsonl", pairs[3:6])
    refused(suite(tmp_path, "pairs.jsonl", "pairs_test.jsonl", kind="preference", model="tiny-llama"),
            "pairs.jsonl:3: rejected: chosen and rejected are the same answer")


def test_empty_summaries_and_documents_are_named(tmp_path):
    docs = [{"document": f"Person A said {i} things. Person B agreed.", "summary": f"They talked {i}."}
            for i in range(10)]
    docs[1]["summary"], docs[4]["document"] = "", None
    jsonl(tmp_path / "sum.jsonl", docs)
    jsonl(tmp_path / "sum_test.jsonl", docs[5:8])
    refused(suite(tmp_path, "sum.jsonl", "sum_test.jsonl", kind="summarization", model="tiny-llama"),
            "sum.jsonl:2: summary: is empty", "sum.jsonl:5: document: is null")


@pytest.mark.e2e
def test_on_bad_rows_drop_runs_and_counts_each_split_and_reason(tmp_path, capsys):
    items = rows(40)
    items[3]["text"] = None
    jsonl(tmp_path / "train.jsonl", items, raw={10: '{"text": "cut'})
    test = rows(12, start=100)
    test[2]["label"] = "meh"
    jsonl(tmp_path / "test.jsonl", test)
    path = suite(tmp_path, "train.jsonl", "test.jsonl", data_extra="on_bad_rows: drop\nallow_unseen_labels: true")
    assert validate(path)[0] == 0
    code = main(["run", str(path), "--quiet", "--results", str(tmp_path / "results"),
                 "--reports", str(tmp_path / "reports")])
    out = capsys.readouterr()
    assert code == 0, out.err
    from harness.records.store import FileRecordStore

    record = FileRecordStore(tmp_path / "results" / "mine").load_all()[0]
    assert record.status == "complete", record.reason
    checks = record.data_checks
    assert checks["rows"] == {"train": 40, "test": 12}
    assert checks["dropped"] == {"train": {"unparseable": 1, "empty_text": 1}}
    assert checks["unseen_labels"] == {"test": {"meh": 1}}
    line = "data · t: train: 2 rows dropped (1 empty or non-text, 1 cannot be parsed)"
    assert line in out.out
    assert "1 test row carries labels the training split lacks (meh)" in out.out
    page = (tmp_path / "reports" / "mine" / "index.html").read_text()
    assert line in page and "labels the training split lacks" in page
    # nothing of the libraries' chatter on the terminal: it is in the run's log
    assert "Warning" not in out.err and "Traceback" not in out.err
    assert (tmp_path / "results" / "mine" / "run.log").exists()


def test_hub_splits_pass_the_same_checks_once_loaded(tmp_path, monkeypatch):
    """A hub data set is checked when loaded (validate cannot read it offline): the same faults,
    named by split and row; dropped and counted with on_bad_rows: drop."""
    import datasets

    from harness.errors import UserError
    from harness.spec import DataSpec
    from harness.tasks import family_of
    from harness.tasks.data import load_splits

    train = rows(30)
    train[6]["text"] = ""
    fake = {"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(rows(8))}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None: fake[split])
    spec = {"hub": {"name": "someone/reviews", "splits": {"train": "train", "test": "test"}}}
    with pytest.raises(UserError) as err:
        load_splits(DataSpec.model_validate(spec), family_of("classification"), tmp_path)
    assert str(err.value.problems[0]) == "hub someone/reviews split train:7: text: is empty"
    splits, _, report = load_splits(DataSpec.model_validate({**spec, "on_bad_rows": "drop"}),
                                    family_of("classification"), tmp_path)
    assert report["dropped"] == {"train": {"empty_text": 1}}
    assert len(splits["train"]) + len(splits["validation"]) == 29 and "" not in splits["train"]["text"]
