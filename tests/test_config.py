"""Suite validation: every problem at once, each with file:line and YAML path, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_suite
from harness.errors import UserError

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
name: ok
models:
  - source: builtin:tiny-bert
tasks:
  - name: sentiment
    kind: classification
    data: {builtin: sentiment}
methods:
  - name: lora
    search:
      learning_rate: {low: 0.0001, high: 0.01, log: true}
"""


def problems_of(path) -> list[str]:
    with pytest.raises(UserError) as info:
        load_suite(path)
    return [str(p) for p in info.value.problems]


def test_good_suite_loads_typed(write_suite):
    loaded = load_suite(write_suite(GOOD))
    assert loaded.suite.methods[0].search["learning_rate"].log is True
    assert loaded.suite.search.trials_per_cell == 3  # default


def test_missing_file(tmp_path):
    [msg] = problems_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "file not found" in msg


def test_yaml_syntax_error_has_line(write_suite):
    path = write_suite("name: x\nmodels: [\n  - a: b\n")
    [msg] = problems_of(path)
    assert "YAML syntax error" in msg and f"{path}:" in msg


def test_unknown_key_line_and_path(write_suite):
    path = write_suite(GOOD.replace("    kind: classification", "    kind: classification\n    colour: red"))
    [msg] = problems_of(path)
    assert msg == f"{path}:7: tasks[0].colour: unknown key 'colour'"


def test_wrong_type(write_suite):
    path = write_suite(GOOD + "search: {trials_per_cell: many}\n")
    [msg] = problems_of(path)
    assert f"{path}:12: search.trials_per_cell:" in msg and "valid integer" in msg and "'many'" in msg


def test_zero_and_negative_trials(write_suite):
    for bad in (0, -3):
        [msg] = problems_of(write_suite(GOOD + f"search: {{trials_per_cell: {bad}}}\n"))
        assert "search.trials_per_cell" in msg and "greater than 0" in msg


def test_unknown_names_suggest_and_list(write_suite):
    text = (GOOD.replace("name: lora", "name: lorra").replace("kind: classification", "kind: clasification")
            .replace("builtin:tiny-bert", "builtin:tiny-bret"))
    msgs = problems_of(write_suite(text))
    joined = "\n".join(msgs)
    assert len(msgs) == 3
    assert "methods[0].name: unknown method 'lorra'. Did you mean 'lora'? Valid methods: adalora, adapter_houlsby" in joined
    assert "tasks[0].kind: unknown task kind 'clasification'. Did you mean 'classification'?" in joined
    assert "models[0].source: unknown builtin model 'tiny-bret'. Did you mean 'tiny-bert'?" in joined


def test_search_range_low_above_high(write_suite):
    path = write_suite(GOOD.replace("low: 0.0001, high: 0.01", "low: 3, high: 1"))
    msgs = problems_of(path)
    assert f"{path}:11: methods[0].search.learning_rate.low: low <= high must hold, but got low=3, high=1" in msgs


def test_unknown_search_parameter_for_method(write_suite):
    msgs = problems_of(write_suite(GOOD.replace("learning_rate: {", "lerning_rate: {")))
    assert any("unknown parameter 'lerning_rate' for method lora. Did you mean 'learning_rate'?" in m for m in msgs)


def test_data_file_missing_and_columns_missing(write_suite, tmp_path):
    (tmp_path / "train.jsonl").write_text('{"sentence": "good", "label": 1}\n{"sentence": "awful", "label": 0}\n')
    (tmp_path / "test.csv").write_text("sentence,label\nbad,0\n")
    text = GOOD.replace("data: {builtin: sentiment}",
                        "data: {files: {train: train.jsonl, test: test.csv, validation: gone.jsonl}}")
    msgs = problems_of(write_suite(text))
    joined = "\n".join(msgs)
    assert "tasks[0].data.files.validation: data file not found" in joined
    assert "tasks[0].data.files.train: column 'text' (for text) is missing; the data has: sentence, label" in joined
    assert "tasks[0].data.files.test: column 'text' (for text) is missing" in joined


def test_column_mapping_fixes_columns(write_suite, tmp_path):
    (tmp_path / "train.jsonl").write_text('{"sentence": "good", "label": 1}\n{"sentence": "awful", "label": 0}\n')
    (tmp_path / "test.csv").write_text("sentence,label\nbad,0\n")
    text = GOOD.replace("data: {builtin: sentiment}",
                        "data: {files: {train: train.jsonl, test: test.csv}, columns: {text: sentence}}")
    assert load_suite(write_suite(text)).suite.tasks[0].data.columns == {"text": "sentence"}


def test_every_problem_at_once(write_suite):
    text = GOOD.replace("name: lora", "name: lorra").replace("    kind: classification",
                                                              "    kind: classification\n    colour: red")
    text += "search: {trials_per_cell: 0}\n"
    msgs = problems_of(write_suite(text))
    assert len(msgs) == 3, msgs


@pytest.mark.e2e
def test_cli_validate_exit_codes_without_traceback(write_suite):
    bad = write_suite(GOOD.replace("name: lora", "name: lorra"), "bad.yaml")
    good = write_suite(GOOD, "good.yaml")
    run = lambda *a: subprocess.run([sys.executable, "-m", "harness.cli", "validate", *map(str, a)],
                                    capture_output=True, text=True, timeout=60)
    ok = run(good)
    assert ok.returncode == 0 and "ok" in ok.stdout
    res = run(good, bad)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "bad.yaml:9: methods[0].name: unknown method 'lorra'" in res.stderr


def test_run_with_bad_suite_exits_2(write_suite, capsys):
    assert main(["run", str(write_suite("name: [unclosed\n"))]) == 2
    assert "YAML syntax error" in capsys.readouterr().err


@pytest.mark.parametrize("suite", sorted((REPO / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_validate(suite):
    loaded = load_suite(suite)
    assert loaded.suite.name
    assert suite.read_text().startswith("#"), "each shipped suite starts with a comment saying how to run it"


@pytest.mark.parametrize("argv, flag, words", [
    (["--data", "dialogsum-mini"], "--data", "needs a decoder LM"),  # the data set's own task kind, on an encoder
    (["--data", "nope"], "--data", "unknown builtin data set"),
    (["--model", "builtin:tiny-llama", "--data", "preference-support"], "--data", "TRL's own trainer"),
    (["--steps", "0"], "--steps", "greater than 0"),
    (["--model", "builtin:tiny-llama", "--method", "bitfit"], "--method/--param", "no bias terms"),
    (["--method", "lora", "--param", "rr=3"], "--method/--param", "Did you mean 'r'"),
    (["--param", "r"], "--param", "key=value"),
])
def test_bench_bad_options_name_the_flag_and_exit_2(argv, flag, words, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert f"harness bench: {flag}: " in err and words in err and "Traceback" not in err


def test_labels_that_share_a_results_folder_are_rejected(write_suite):
    text = GOOD.replace("""methods:
  - name: lora""", """methods:
  - name: bitfit
    label: a b
  - name: ia3
    label: a_b
  - name: lora""").replace("""models:
  - source: builtin:tiny-bert""", """models:
  - source: builtin:tiny-bert
  - source: builtin:tiny-bert
    max_length: 64""")
    msgs = "\\n".join(problems_of(write_suite(text)))
    assert "methods[1]: label 'a_b' names the same results folder as methods[0] ('a b')" in msgs
    assert "models[1]: label 'tiny-bert' names the same results folder as models[0]" in msgs


def test_a_number_yaml_reads_as_text_says_how_to_write_it(write_suite):
    from harness.config.loader import load_suite
    from harness.errors import UserError

    path = write_suite("""\
name: s
models: [{source: builtin:tiny-bert}]
tasks: [{name: t, kind: classification, data: {builtin: sentiment}}]
methods: [{name: lora, params: {learning_rate: 5e-05}}]
""")
    with pytest.raises(UserError) as info:
        load_suite(path)
    text = str(info.value)
    assert "learning_rate: Input should be a valid number, but got '5e-05' (YAML reads 5e-05 as text: write 5.0e-05)" in text
