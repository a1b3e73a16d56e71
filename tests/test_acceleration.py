"""Acceleration options (suite `acceleration`, per method, and the `acceleration_axis` sweep
dimension): validate rejects what cannot run here, each option reaches the library that implements
it, records carry the options, the report compares each option with the axis's first entry, and
decoder QA scores its options in batches with the same picks."""

from __future__ import annotations

import json
import re

import pytest

from harness.cli import main
from harness.config import loader
from harness.config.loader import load_suite
from harness.records.store import FileRecordStore
from harness.report.acceleration import acceleration_table
from harness.plan import plan

DECODER = """\
name: {name}
models: [{{source: 'builtin:tiny-llama', max_length: 160}}]
tasks: [{{name: dialogsum, kind: summarization, data: {{builtin: dialogsum-mini, train_size: 48, validation_size: 8, test_size: 8}}}}]
methods: [{{name: lora}}, {{name: full}}]
search: {{trials_per_cell: 1, sampler: none}}
training: {{max_steps: 6, batch_size: 8, eval_batch_size: 8}}
references: false
"""

ENCODER = """\
name: {name}
models: [{{source: 'builtin:tiny-bert', max_length: 32}}]
tasks: [{{name: sentiment, kind: classification, data: {{builtin: sentiment, train_size: 96, test_size: 32}}}}]
methods: [{{name: lora}}]
search: {{trials_per_cell: 1, sampler: none}}
training: {{max_steps: 4, batch_size: 16, eval_batch_size: 32}}
references: false
"""


def in_child(fn, *args):
    """fn(*args) in a forked process, its result back. Model forwards big enough to start OpenMP's
    thread pool must not run in the test process: GNU libgomp is not fork-safe, and every trial or
    bench child forked from this process afterwards would hang at its first parallel region."""
    import os

    from harness.runner.isolation import fork_call

    pid, conn = fork_call(lambda *a: a[-1].send(fn(*a[:-1])), *args)
    try:
        return conn.recv()
    finally:
        conn.close()
        os.waitpid(pid, 0)


def _run(suite, tmp_path, *extra):
    return main(["run", str(suite), "--quiet", "--results", str(tmp_path / "results"),
                 "--reports", str(tmp_path / "reports"), *extra])


@pytest.fixture
def cpu_only(monkeypatch):
    """Validation as on a machine without CUDA, whatever this one has."""
    monkeypatch.setattr(loader, "_cuda_here", lambda requested: False)


@pytest.mark.parametrize("extra, field, words", [
    ("training: {gradient_checkpointing: true}\n", "training.gradient_checkpointing", "acceleration.gradient_checkpointing"),
    ("acceleration: {kernels: liger}\n", "acceleration.kernels", "CUDA"),
    ("acceleration: {attention: flash_attention_2}\n", "acceleration.attention", "CUDA"),
    ("acceleration_axis: [{}, {packing: true}]\n", "acceleration_axis[1].packing", "an encoder"),
])
def test_validate_rejects_options_that_cannot_run_here(write_suite, capsys, cpu_only, extra, field, words):
    text = ENCODER.format(name="v")
    if extra.startswith("training:"):
        text = text.replace("training: {max_steps: 4,", "training: {gradient_checkpointing: true, max_steps: 4,")
    else:
        text += extra
    assert main(["validate", str(write_suite(text))]) == 2
    err = capsys.readouterr().err
    assert re.search(r"suite\.yaml:\d+: " + re.escape(field), err) and words in err, err


def test_validate_rejects_packing_for_soft_prompts(write_suite, capsys):
    text = DECODER.format(name="v").replace("{name: full}", "{name: prompt_tuning, acceleration: {packing: true}}")
    assert main(["validate", str(write_suite(text))]) == 2
    err = capsys.readouterr().err
    assert re.search(r"suite\.yaml:\d+: methods\[1\]\.acceleration\.packing", err) and "position ids" in err, err


def test_the_axis_is_a_sweep_dimension_and_methods_override_it(write_suite):
    text = DECODER.format(name="axis") + "acceleration: {gradient_checkpointing: true}\n" \
                                         "acceleration_axis: [{}, {packing: true}, {gradient_checkpointing: false}]\n"
    text = text.replace("{name: full}", "{name: full, acceleration: {packing: false}}").replace("references: false",
                                                                                                 "references: true")
    cells = plan(load_suite(write_suite(text)).suite)
    labels = {c.method_label: c.acceleration for c in cells}
    # the suite's option under every axis entry, the method's own on top; baseline rows once
    assert set(labels) == {"lora+ckpt", "lora+ckpt+packing", "lora+eager", "full+ckpt", "full+eager", "none", "trivial"}
    assert labels["lora+ckpt+packing"].packing and labels["lora+ckpt+packing"].gradient_checkpointing
    assert len([c for c in cells if c.entry.name == "full"]) == 3  # packing off for full: two cells alike, by index
    assert [c.axis_index for c in cells if c.entry.name == "lora"] == [0, 1, 2]


QA = DECODER.replace("{{name: dialogsum, kind: summarization, data: {{builtin: dialogsum-mini, train_size: 48, "
                     "validation_size: 8, test_size: 8}}}}",
                     "{{name: medqa, kind: qa, data: {{builtin: medqa-mini, train_size: 48, validation_size: 8, "
                     "test_size: 24}}}}")


def test_row_packer_fills_rows_no_longer_than_the_longest_example():
    from harness.tasks.packing import RowPacker

    lengths = [250, 40, 40, 60, 100, 120, 30, 200]
    rows = RowPacker.rows(lengths)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= max(lengths) for row in rows)
    assert len(rows) == 4  # 250 | 200+40 | 120+100+30 | 60+40: half the padded rows
    assert RowPacker.rows([7, 7, 7]) == [[0], [1], [2]]  # equal lengths: nothing to pack


@pytest.mark.e2e
def test_packing_trains_the_same_tokens_as_padding_with_the_same_loss(write_suite, tmp_path):
    """Packed micro-batches (rows of several examples, position ids restarting at each) see exactly
    the non-padding tokens a padded batch has, and their loss equals the padded one: the examples
    do not attend to each other."""
    import torch

    from harness.runner.prepare import Preparer
    from harness.runner.trial import no_cache_in_training
    from harness.tasks.packing import REAL_TOKENS

    text = QA.format(name="pack") + "acceleration_axis: [{}, {packing: true}]\n"
    loaded = load_suite(write_suite(text))
    cell = plan(loaded.suite)[0]
    prepared = Preparer(loaded.base_dir, seed=0).get(cell.model, cell.task)

    def losses(prepared):
        train = prepared.data["train"]
        by_length = sorted(range(len(train)), key=lambda i: len(train[i]["input_ids"]))
        features = [train[i] for i in [by_length[-1], *by_length[:7]]]  # a long one and short ones: rows to share
        padded = prepared.head.collator(prepared.tokenizer)(features)
        packed = prepared.head.collator(prepared.tokenizer, packing=True)(features)
        real = int(packed.pop(REAL_TOKENS))
        model = prepared.model.eval()  # no dropout: the same forward twice
        with torch.no_grad():
            with no_cache_in_training(model):
                no_cache = float(model(**packed).loss), float(model(**padded).loss)
            cached = float(model(**packed).loss)
        return {"lengths": sorted(len(f["input_ids"]) for f in features), "shape": tuple(packed["input_ids"].shape),
                "padded_shape": tuple(padded["input_ids"].shape), "mask": "attention_mask" in packed,
                "real": real, "padded_tokens": int(padded["attention_mask"].sum()), "no_cache": no_cache,
                "cached": cached}

    got = in_child(losses, prepared)
    assert len(set(got["lengths"])) > 1  # mixed lengths: padding to remove
    assert got["shape"][0] < got["padded_shape"][0] and got["shape"][1] == got["padded_shape"][1], got
    assert not got["mask"] and got["real"] == got["padded_tokens"] == sum(got["lengths"])
    packed_loss, padded_loss = got["no_cache"]
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    # with the cache on, transformers reads each packed row as one sequence: its examples mix
    assert got["cached"] != pytest.approx(padded_loss, abs=1e-5)

    assert _run(loaded.path, tmp_path) == 0
    records = {r.acceleration["label"]: r for r in FileRecordStore(tmp_path / "results" / "pack").load_all()
               if r.method in ("lora+eager", "lora+packing")}
    eager, packing = records["eager"], records["packing"]
    assert eager.status == packing.status == "complete"
    assert packing.throughput.train_tokens == eager.throughput.train_tokens  # every non-padding token, once
    losses = lambda r: [h["loss"] for h in r.history if "loss" in h]  # noqa: E731
    # the first step's loss to float rounding; later ones drift by rounding carried through the updates
    assert losses(packing)[0] == pytest.approx(losses(eager)[0], abs=1e-4)
    assert losses(packing) == pytest.approx(losses(eager), rel=1e-3)
    assert packing.acceleration["packing"] and packing.acceleration["axis_index"] == 1
    assert packing.acceleration["base_method"] == "lora"


def test_flash_attention_packs_the_micro_batch_into_one_row():
    from transformers import DataCollatorWithFlattening

    from harness.tasks.heads import HEADS

    collate = HEADS.get("causal_lm").collator(None, packing=True, attention="flash_attention_2")
    assert isinstance(collate, DataCollatorWithFlattening)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}])
    assert batch["input_ids"].shape == (1, 5) and batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5]  # the varlen kernel's sequence boundaries


@pytest.mark.e2e
def test_checkpointing_reaches_the_trainer_and_trains_the_same_steps(write_suite, tmp_path):
    from harness.runner.jobs import make_job
    from harness.runner.trainer import training_args

    text = DECODER.format(name="ckpt") + "acceleration_axis: [{}, {gradient_checkpointing: true}]\n"
    loaded = load_suite(write_suite(text))
    cells = {c.method_label: c for c in plan(loaded.suite)}
    job = make_job(loaded, cells["full+ckpt"], trial_number=0, seed=0, device="cpu", suite_hash="x")
    args = training_args(job, str(tmp_path / "out"))
    assert args.activation_checkpointing and not args.torch_compile and not args.use_liger_kernel
    assert _run(loaded.path, tmp_path) == 0
    records = {r.method: r for r in FileRecordStore(tmp_path / "results" / "ckpt").load_all()}
    losses = lambda r: [h["loss"] for h in r.history if "loss" in h]  # noqa: E731
    # recomputing activations changes no number: the same losses step by step
    assert losses(records["full+ckpt"]) == pytest.approx(losses(records["full+eager"]), abs=1e-4)
    table = acceleration_table(list(records.values()))
    row = table[(table.method == "full") & (table.option == "ckpt")].iloc[0]
    assert row.baseline == "eager" and row.speedup > 0 and row.memory_change is not None
    base = table[(table.method == "full") & (table.option == "eager")].iloc[0]
    assert base.speedup == pytest.approx(1.0)
    page = (tmp_path / "reports" / "ckpt" / "index.html").read_text()
    assert "Acceleration: speed-up and memory change" in page and "full" in page


@pytest.mark.e2e
def test_attention_implementation_reaches_the_trial_model(write_suite):
    from harness.runner.jobs import make_job
    from harness.runner.prepare import Preparer
    from harness.runner.trial import setup_model

    text = DECODER.format(name="attn").replace("{name: full}", "{name: full, acceleration: {attention: eager}}")
    text += "runner: {isolation: inline}\n"
    loaded = load_suite(write_suite(text))
    cells = {c.method_label: c for c in plan(loaded.suite)}
    assert cells["full"].acceleration.attention == "eager" and cells["lora"].acceleration.attention is None
    prepared = Preparer(loaded.base_dir, seed=0).get(cells["full"].model, cells["full"].task)
    job = make_job(loaded, cells["full"], trial_number=0, seed=0, device="cpu", suite_hash="x")

    def implementations(job, prepared):  # inline: a copy of the shared base (a big copy starts OpenMP: in a child)
        model, _ = setup_model(job, prepared)
        return model.config._attn_implementation, prepared.model.config._attn_implementation

    trial_model, shared_base = in_child(implementations, job, prepared)
    assert trial_model == "eager" and shared_base == "sdpa"  # the shared base is untouched


@pytest.mark.e2e
def test_compile_runs_end_to_end_with_its_time_kept_apart(write_suite, tmp_path):
    """torch.compile through the Trainer (inductor: C++ on the CPU). The compile time is on record and
    out of train time, so tokens/s is the compiled steady state."""
    text = ENCODER.format(name="compiled") + "acceleration: {compile: true}\n"
    assert _run(write_suite(text), tmp_path) == 0
    [record] = FileRecordStore(tmp_path / "results" / "compiled").load_all()
    assert record.status == "complete", record.reason
    assert record.acceleration["compile"] and record.acceleration["label"] == "compile"
    assert record.timing.compile_s > 1.0  # inductor's C++ build alone takes seconds
    assert record.timing.train_s < record.timing.compile_s  # 4 tiny steps: far less than the compile
    assert record.throughput.train_tokens_per_s > 0


@pytest.mark.e2e
def test_batched_option_scoring_picks_what_one_prompt_at_a_time_picks(write_suite):
    """Decoder QA scores its prompts eval_batch_size at a time (left padding, shared KV cache): the
    same scores, to float rounding, and the same picks as one prompt at a time."""
    from harness.runner.prepare import Preparer
    from harness.tasks.generative import option_scores, option_scores_batch, pick_options

    text = QA.format(name="qa")
    loaded = load_suite(write_suite(text))
    cell = plan(loaded.suite)[0]
    prepared = Preparer(loaded.base_dir, seed=0).get(cell.model, cell.task)

    def scored(prepared):
        test = prepared.data["test"]
        prompts, options = list(test["prompt_ids"]), list(test["option_ids"])
        model = prepared.model.eval()
        return {"lengths": {len(p) for p in prompts},
                "one": [option_scores(model, p, o, "cpu") for p, o in zip(prompts, options)],
                "batched": option_scores_batch(model, prompts, options, "cpu"),
                "picks": {size: pick_options(model, prompts, options, "cpu", batch_size=size) for size in (1, 3, 8, 64)}}

    got = in_child(scored, prepared)
    assert len(got["lengths"]) > 1  # prompts of several lengths: left padding matters
    one, batched = got["one"], got["batched"]
    assert [len(s) for s in batched] == [len(s) for s in one]
    assert max(abs(a - b) for x, y in zip(one, batched) for a, b in zip(x, y)) < 1e-4
    singles = got["picks"][1]
    assert singles == [max(range(len(s)), key=s.__getitem__) for s in one]
    assert got["picks"][3] == got["picks"][8] == got["picks"][64] == singles


@pytest.mark.e2e
def test_bench_runs_a_causal_lm_head_and_reports_evaluation_speed(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    assert main(["bench", "--model", "builtin:tiny-llama", "--head", "causal-lm", "--data", "sentiment",
                 "--max-length", "32", "--batch-size", "4", "--steps", "2", "--repeats", "1", "--test-size", "8",
                 "--eval-batch-size", "4", "--accelerate", "gradient_checkpointing=true",
                 "--json", str(out_json)]) == 0
    out = json.loads(out_json.read_text())
    assert out["head"] == "causal_lm" and out["acceleration"] == "ckpt"
    assert out["harness"]["eval_samples_per_s"] > 0 and out["bare"]["tokens_per_s"] > 0
    assert "evaluation (test split, eval batch 4)" in capsys.readouterr().out


def test_bench_names_a_bad_acceleration_flag(capsys):
    assert main(["bench", "--accelerate", "turbo=true"]) == 2
    err = capsys.readouterr().err
    assert "--accelerate" in err and "turbo" in err, err
