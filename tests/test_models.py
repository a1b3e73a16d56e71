"""Model sources: built-in, local folder, hub id (with a clear error where the hub is out of reach)."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.config import load_suite
from harness.models import BUILTIN_MODELS

SUITE = """\
name: src
models:
  - source: {source}
tasks:
  - name: sentiment
    kind: classification
    data: {{builtin: sentiment, train_size: 32, test_size: 16}}
methods:
  - name: bitfit
search: {{trials_per_cell: 1}}
training: {{max_steps: 2}}
"""


@pytest.mark.e2e
def test_hub_model_without_hub_or_cache_fails_at_once(write_suite, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suite = write_suite(SUITE.format(source="some-org/not-cached-model"))
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2
    assert "hub cannot be reached" in err and "some-org/not-cached-model" in err
    assert "Traceback" not in err


@pytest.mark.e2e
def test_local_model_folder_runs(write_suite, tmp_path, capsys):
    folder = BUILTIN_MODELS.get("tiny-bert").locate()
    suite = write_suite(SUITE.format(source=str(folder)))
    assert load_suite(suite).suite.models[0].source == str(folder)
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    assert code == 0


def test_local_model_folder_without_config_is_rejected(write_suite, tmp_path, capsys):
    (tmp_path / "empty-model").mkdir()
    suite = write_suite(SUITE.format(source="./empty-model"))
    assert main(["validate", str(suite)]) == 2
    assert "models[0].source: local model folder" in capsys.readouterr().err


@pytest.mark.e2e
def test_hub_data_set_without_hub_fails_at_once(write_suite, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = SUITE.format(source="builtin:tiny-bert").replace(
        "data: {builtin: sentiment, train_size: 32, test_size: 16}",
        "data: {hub: {name: stanfordnlp/imdb, splits: {train: train, test: test}}}")
    suite = write_suite(text)
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2
    assert "hub cannot be reached" in err and "stanfordnlp/imdb" in err and "Traceback" not in err
