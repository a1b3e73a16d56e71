"""End to end: a suite goes in, an Optuna sweep runs in trial processes, records and a leaderboard come out."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace

import optuna
import pytest

from conftest import TINY_SUITE
from harness.cli import main
from harness.records.schema import SCHEMA_VERSION
from harness.records.store import FileRecordStore


def run(suite, tmp_path, capsys, *extra):
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "results"),
                 "--reports", str(tmp_path / "reports"), *extra])
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def three_methods(tmp_path_factory):
    """One sweep that several tests read: LoRA, BitFit and full fine-tuning, two trials each."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    suite = tmp_path / "suite.yaml"
    suite.write_text(TINY_SUITE.format(name="tiny", methods="  - name: lora\n  - name: bitfit\n  - name: full",
                                       trials=2, steps=12))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "results"),
                     "--reports", str(tmp_path / "reports")])
    return code, SimpleNamespace(out=out.getvalue(), err=err.getvalue()), tmp_path


@pytest.mark.e2e
def test_end_to_end_sweep_three_methods_two_trials(three_methods):
    code, out, tmp_path = three_methods
    assert code == 0, out.err
    store = FileRecordStore(tmp_path / "results" / "tiny")
    records = store.load_all()
    assert sorted((r.method, r.trial_number) for r in records) == [("bitfit", 0), ("bitfit", 1), ("full", 0),
                                                                   ("full", 1), ("lora", 0), ("lora", 1)]
    for r in records:
        assert r.status == "complete", r.reason
        assert 0.0 <= r.metrics["accuracy"] <= 1.0 and "macro_f1" in r.metrics
        assert r.throughput.train_tokens > 0 and r.throughput.train_tokens_per_s > 0
        assert r.throughput.train_steps == 12
        assert r.memory.peak_bytes > 0 and "VmHWM" in r.memory.source
        # the whole-trial peak covers what the kernel counted since the last phase reset
        assert r.memory.peak_bytes >= 0.99 * r.memory.kernel_max_rss_bytes
        assert r.memory.peak_bytes >= max(r.memory.by_phase_peak_bytes.values())
        assert r.throughput.median_step_s > 0 and r.throughput.flops_per_token > 0
        assert r.environment["versions"]["torch"] and "git_commit" in r.environment
        assert r.params["learning_rate"] > 0 and r.suite_hash and r.data_fingerprint
        assert r.timing.total_s >= r.timing.train_s + r.timing.eval_s
    # the records on disk are complete JSON with a schema version
    files = sorted((store.root / "records").glob("*/trial-*.json"))
    assert len(files) == 6 and all(json.loads(f.read_text())["schema_version"] == SCHEMA_VERSION for f in files)
    assert not list((store.root / "records").glob("*/.*.tmp"))
    # one Optuna study per cell, with the same budget each
    studies = optuna.get_all_study_summaries(store.study_storage_url)
    assert sorted(s.study_name for s in studies) == ["sentiment--tiny-bert--bitfit", "sentiment--tiny-bert--full",
                                                     "sentiment--tiny-bert--lora"]
    assert all(s.n_trials == 2 for s in studies)
    # the leaderboard: a table per (task, model), one row per method, and exported files
    assert "sentiment · tiny-bert" in out.out and "bitfit" in out.out and "lora" in out.out
    board = json.loads((tmp_path / "reports" / "tiny" / "leaderboard.json").read_text())
    assert {row["method"] for row in board} == {"bitfit", "full", "lora"}


@pytest.mark.e2e
def test_rerun_resumes_without_rerunning_finished_trials(tiny_suite, tmp_path, capsys):
    import torch

    # Start this process's OpenMP pool first: a trial forked from such a process could hang,
    # so the sweep must run from a clean (spawned) process.
    torch.set_num_threads(2)
    assert (torch.ones(256, 256) @ torch.ones(256, 256)).sum() > 0
    suite = tiny_suite(methods=("bitfit",), trials=2, steps=4)
    assert run(suite, tmp_path, capsys)[0] == 0
    store = FileRecordStore(tmp_path / "results" / "tiny")
    before = {r.trial_number: r.finished_at for r in store.load_all()}
    # raise the budget: only the new trial runs
    suite.write_text(suite.read_text().replace("trials_per_cell: 2", "trials_per_cell: 3"))
    assert run(suite, tmp_path, capsys)[0] == 0
    after = {r.trial_number: r.finished_at for r in store.load_all()}
    assert sorted(after) == [0, 1, 2]
    assert all(after[n] == before[n] for n in before)


@pytest.mark.e2e
def test_changed_suite_is_not_mixed_into_old_results(tiny_suite, tmp_path, capsys):
    suite = tiny_suite(methods=("bitfit",), trials=1, steps=4)
    assert run(suite, tmp_path, capsys)[0] == 0
    suite.write_text(suite.read_text().replace("max_steps: 4", "max_steps: 8"))
    code, out = run(suite, tmp_path, capsys)
    assert code == 2 and "holds trials of a different version of this suite" in out.err
    assert "differs in training.max_steps" in out.err
    assert len(FileRecordStore(tmp_path / "results" / "tiny").load_all()) == 1  # nothing lost or mixed


@pytest.mark.e2e
def test_failing_trial_is_a_record_and_the_sweep_goes_on(tiny_suite, tmp_path, capsys):
    broken = "  - name: lora\n    label: lora-broken\n    params: {target_modules: [no_such_module]}"
    code, out = run(tiny_suite(methods=(broken, "bitfit"), trials=1, steps=4), tmp_path, capsys)
    assert code == 1  # after writing every record and the report
    assert "cell sentiment--tiny-bert--lora-broken has no complete trial (failed: NoMatchingPeftModuleError" in out.err
    assert (tmp_path / "reports" / "tiny" / "index.html").exists()
    records = {r.method: r for r in FileRecordStore(tmp_path / "results" / "tiny").load_all()}
    assert records["lora-broken"].status == "failed"
    assert records["lora-broken"].reason.startswith("NoMatchingPeftModuleError: No modules were targeted")
    assert records["bitfit"].status == "complete"
    assert "failed" in out.out and "lora-broken" in out.out


@pytest.mark.e2e
def test_trainable_parameter_counts(three_methods):
    code, _, tmp_path = three_methods
    assert code == 0
    records = {r.method: r for r in FileRecordStore(tmp_path / "results" / "tiny").load_all()}
    full, bitfit = records["full"], records["bitfit"]
    assert full.trainable_params == full.total_params and full.trainable_pct == 100.0
    # tiny-bert: hidden 32, 2 layers, intermediate 64, 2 labels -> biases + classifier weights
    from transformers import AutoModelForSequenceClassification

    from harness.models import BUILTIN_MODELS

    model = AutoModelForSequenceClassification.from_pretrained(
        str(BUILTIN_MODELS.get("tiny-bert").locate()), num_labels=2)
    expected = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias") or n.startswith("classifier."))
    assert bitfit.trainable_params == expected
    assert bitfit.total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.e2e
def test_smoke_runs_every_cell_once_on_a_few_examples(tmp_path, capsys, write_suite):
    text = """\
name: sm
models:
  - source: builtin:tiny-bert
    max_length: 32
  - source: builtin:tiny-llama
    max_length: 32
tasks:
  - name: sentiment
    kind: classification
    data: {builtin: sentiment}
    train_sizes: [100, 400]
methods:
  - name: lora
  - name: ia3
search: {trials_per_cell: 5}
confirm: {seeds: 3}
training: {max_steps: 500, batch_size: 8}
"""
    code, out = run(write_suite(text), tmp_path, capsys, "--smoke")
    assert code == 0, out.err
    # 2 models x 2 training-set sizes x (2 methods + the 2 baseline rows)
    assert "smoke: all 16 cells trained, validated and were scored on test" in out.out
    records = FileRecordStore(tmp_path / "results" / "sm-smoke").load_all()
    assert len(records) == 16 and {r.status for r in records} == {"complete"}
    assert {r.phase for r in records} == {"search"}  # no confirmation seeds
    for r in (r for r in records if r.method in ("lora", "ia3")):
        assert r.throughput.train_steps == 2
        assert any("validation_accuracy" in h for h in r.history)  # the validation path ran too
    assert not (tmp_path / "results" / "sm").exists()  # the real results folder is untouched


@pytest.mark.e2e
def test_data_that_fails_to_load_is_a_failed_record_and_the_sweep_goes_on(write_suite, tmp_path, capsys):
    # a model folder whose config reads but which holds no tokenizer or weights: validate reads only
    # the config (a data file's faults stop validate itself: tests/test_data_checks.py), so the cell
    # fails when its trials prepare it
    (tmp_path / "half-model").mkdir()
    (tmp_path / "half-model" / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    text = """\
name: two
models: [{source: 'builtin:tiny-bert', max_length: 32}, {source: ./half-model, name: half, max_length: 32}]
tasks:
  - {name: broken, kind: classification, models: [half], data: {builtin: sentiment, train_size: 64, test_size: 32}}
  - {name: fine, kind: classification, models: [tiny-bert], data: {builtin: sentiment, train_size: 64, test_size: 32}}
methods: [{name: bitfit}]
search: {trials_per_cell: 2, strategy: none}
training: {max_steps: 2}
references: false
"""
    code, out = run(write_suite(text), tmp_path, capsys)
    assert code == 1
    records = FileRecordStore(tmp_path / "results" / "two").load_all()
    broken = [r for r in records if r.task == "broken"]
    assert len(broken) == 2 and all(r.status == "failed" for r in broken)
    assert broken[0].reason.startswith("preparing half / broken failed:")
    assert "Traceback" not in out.err
    assert [r.status for r in records if r.task == "fine"] == ["complete", "complete"]
