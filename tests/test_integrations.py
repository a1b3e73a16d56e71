"""The tools teams already use: trackers (TensorBoard, MLflow) read back with their own readers,
the results' Optuna storage opened the way optuna-dashboard opens it, the Python API against the
CLI's export, and the suite's JSON Schema against every shipped suite."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

import harness
from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
SUITE = """\
name: tools
models: [{source: "builtin:tiny-bert", max_length: 32}]
tasks: [{name: s, kind: classification, data: {builtin: sentiment, train_size: 64, validation_size: 32, test_size: 32}}]
methods: [{name: lora}, {name: bitfit}]
search: {trials_per_cell: 2, seed: 0}
training: {max_steps: 6, batch_size: 16}
references: false
"""


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny sweep with TensorBoard and MLflow on, through the Python API."""
    root = tmp_path_factory.mktemp("tools")
    suite = root / "tools.yaml"
    suite.write_text(SUITE + "tracking: {report_to: [tensorboard, mlflow]}\n")
    results = harness.run(str(suite), results=str(root / "results"), reports=str(root / "reports"))
    return root, results


@pytest.mark.e2e
def test_tensorboard_and_mlflow_hold_one_run_per_trial(tracked):
    root, results = tracked
    records = results.records()
    assert len(records) == 4 and all(r.status == "complete" for r in records)
    tracking = root / "results" / "tools" / "tracking"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for r in records:
        folder = tracking / "tensorboard" / r.cell_id / f"search-trial-{r.trial_number:04d}-seed-{r.seed}"
        events = EventAccumulator(str(folder))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert "train/loss" in tags  # the Trainer's integration, per logging step
        final = events.Scalars("final/test_accuracy")[-1].value
        assert final == pytest.approx(r.metrics["accuracy"])

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracking / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tools")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(records)
    by_name = {run.info.run_name: run for run in runs}
    for r in records:
        run = by_name[f"{r.cell_id}/search-trial-{r.trial_number:04d}-seed-{r.seed}"]
        assert run.data.tags["harness.cell"] == r.cell_id and run.info.status == "FINISHED"
        assert float(run.data.params["learning_rate"]) == pytest.approx(r.params["learning_rate"])
        assert run.data.metrics["test_accuracy"] == pytest.approx(r.metrics["accuracy"])
        assert run.data.metrics["train_mib"] == pytest.approx((r.memory.train_bytes or 0) / 2**20)
        assert len(client.get_metric_history(run.info.run_id, "loss")) >= 1  # step metrics from the record
        assert r.timing.tracking_s > 0


@pytest.mark.e2e
def test_the_optuna_storage_opens_as_optuna_dashboard_opens_it(tracked):
    """optuna-dashboard's own WSGI app over the results' storage lists the studies; each trial holds
    its parameters, its validation score as the value, and the record's key figures as attributes."""
    import optuna
    from optuna_dashboard import wsgi

    root, results = tracked
    storage = f"sqlite:///{root / 'results' / 'tools' / 'optuna.db'}"
    app = wsgi(storage)
    status = {}
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/api/studies", "wsgi.input": io.BytesIO(),
                         "wsgi.errors": io.StringIO(), "SERVER_NAME": "localhost", "SERVER_PORT": "8080",
                         "wsgi.url_scheme": "http"},
                        lambda s, h, exc_info=None: status.setdefault("code", s)))
    assert status["code"].startswith("200")
    names = {s["study_name"] for s in json.loads(body)["study_summaries"]}
    cells = {r.cell_id for r in results.records()}
    assert {n for n in names if "::" not in n} == cells
    for record in results.records():
        study = optuna.load_study(study_name=record.cell_id, storage=storage)
        trial = study.trials[record.trial_number]
        assert trial.value == pytest.approx(record.selection_score)
        assert trial.params["learning_rate"] == pytest.approx(record.params["learning_rate"])
        assert trial.user_attrs["test_accuracy"] == pytest.approx(record.metrics["accuracy"])
        assert trial.user_attrs["status"] == "complete" and trial.user_attrs["train_mib"] > 0


@pytest.mark.e2e
def test_the_python_api_returns_the_cli_leaderboard(tracked, tmp_path):
    root, results = tracked
    assert main(["report", str(root / "results" / "tools"), "--out", str(tmp_path / "report")]) == 0
    exported = json.loads((tmp_path / "report" / "leaderboard.json").read_text())
    board = harness.load(root / "results" / "tools").leaderboard()
    assert json.loads(board.to_json(orient="records")) == exported
    assert list(board["method"]) == [row["method"] for row in exported]
    verdicts = results.compare(harness.load(root / "results" / "tools"))
    assert set(verdicts["verdict"]) <= {"unchanged", "not judged"} and not verdicts["failure"].any()


@pytest.mark.e2e
def test_a_suite_as_a_mapping_runs_through_the_api(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = yaml.safe_load(SUITE)
    suite.update(name="mapping", methods=[{"name": "bitfit"}], search={"trials_per_cell": 1, "sampler": "none"})
    results = harness.run(suite)
    assert results.exit_code == 0 and results.leaderboard()["method"].tolist() == ["bitfit"]
    assert results.page.exists()


def test_bad_tracker_is_refused_by_validate(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE + "tracking: {report_to: [wandb]}\n")
    assert main(["validate", str(suite)]) == 2
    assert "tracking.report_to[0]: wandb is not installed here: pip install wandb" in capsys.readouterr().err


def test_the_schema_checks_every_shipped_suite_and_rejects_unknown_keys(capsys):
    import jsonschema

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads((REPO / "suite.schema.json").read_text()) == schema, \
        "suite.schema.json is stale: harness schema > suite.schema.json"
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((REPO / "suites").glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema=../suite.schema.json")
        assert not list(validator.iter_errors(yaml.safe_load(text))), path.name
    quick = yaml.safe_load((REPO / "suites" / "quickstart.yaml").read_text())
    for mutate in (lambda s: s["training"].update(max_stpes=3), lambda s: s.update(colour="red"),
                   lambda s: s["methods"][1].update(params={"rank": 4})):
        bad = json.loads(json.dumps(quick))
        mutate(bad)
        assert list(validator.iter_errors(bad))
