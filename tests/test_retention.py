"""Retention (harness/measure/retention.py): forgetting, drift and representation drift against the
base itself. Where peft's forgetting figure went wrong (huggingface/peft#3419) is pinned here: labels
shifted as the model's own loss shifts them, and "before" measured on the base, never through a
method as initialised."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from harness.measure.retention import (Clock, Snapshot, _encode, base_view, measure, retention_texts, token_nll)
from harness.methods import METHODS, ApplyContext
from harness.methods.base import is_peft
from harness.metrics.divergence import linear_cka
from harness.models import BUILTIN_MODELS
from harness.runner.prepare import load_model
from harness.spec import LmEvalSpec, ModelSpec, RetentionSpec

SPEC = RetentionSpec(documents=24, min_documents=24, max_tokens=48, batch_size=8)
# identity at initialisation: the method's trainable part adds exactly nothing before a step is taken
IDENTITY = {"lora", "ia3", "adapter_houlsby", "ln_tuning", "full", "qlora", "bitfit"}
# not an identity at initialisation: their virtual tokens / prefixes change every output from the start
SOFT = {"prompt_tuning", "prefix_tuning"}
DECODER_METHODS = ["lora", "ia3", "prompt_tuning", "prefix_tuning", "adapter_houlsby", "ln_tuning", "full", "qlora"]
ENCODER_METHODS = ["lora", "ia3", "prompt_tuning", "adapter_houlsby", "bitfit", "full", "qlora"]


def _setup(model_name: str, head: str, method_name: str | None):
    """(the method's model, the tokenizer, an untouched base loaded the same way)."""
    warnings.filterwarnings("ignore")
    source = str(BUILTIN_MODELS.get(model_name).locate())
    decoder = head == "causal_lm"
    ctx = ApplyContext("CAUSAL_LM" if decoder else "SEQ_CLS", () if decoder else ("classifier",),
                       "llama" if decoder else "bert", max_steps=30)
    labels = [] if decoder else ["negative", "positive"]
    method = METHODS.get(method_name) if method_name else None
    params = method.params.model_validate({}) if method else None
    extra = method.load_kwargs(params, ctx) if method and method.load_kwargs else {}

    def load():
        torch.manual_seed(0)
        return load_model(source, ModelSpec(source=source), head, labels, **extra)

    base, tokenizer = load()
    untouched, _ = load()
    model = method.build(base, params, ctx) if method else base
    return model, tokenizer, untouched


def _texts(n: int = 24) -> list[str]:
    return list(retention_texts(SPEC)[0][:n])


def test_nll_is_the_models_own_loss_shifted_by_one_token():
    model, tok, _ = _setup("tiny-llama", "causal_lm", None)
    texts = _texts(4)
    with torch.no_grad():
        for text in texts:
            ids, mask = _encode(tok, [text], 256, "cpu")
            total, count = token_nll(model, ids, mask)
            assert float(total / count) == pytest.approx(model(input_ids=ids, labels=ids).loss.item(), rel=1e-6)
            assert int(count) == ids.shape[1] - 1  # the first token is never a target
        # padding changes nothing: a padded batch gives each document its unpadded figure
        ids, mask = _encode(tok, texts, 256, "cpu")
        total, count = token_nll(model, ids, mask)
        alone = [token_nll(model, *_encode(tok, [t], 256, "cpu")) for t in texts]
    assert (mask == 0).any()
    torch.testing.assert_close(total / count, torch.stack([s / c for s, c in alone]).squeeze(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method_name", DECODER_METHODS)
def test_with_no_training_step_before_is_the_base_and_identity_methods_forget_nothing(method_name):
    model, tok, untouched = _setup("tiny-llama", "causal_lm", method_name)
    snapshot = None if is_peft(model) else Snapshot(model)
    texts = _texts()
    rows = [list(r) for r in tok(texts[:8], truncation=True, max_length=32)["input_ids"]]
    found = measure(model, tok, spec=SPEC, causal_lm=True, snapshot=snapshot, drift_rows=rows, device="cpu",
                    seconds=0.0)
    # "before" is the base itself, whatever the method: the untouched model's NLL on the same documents
    with torch.no_grad():
        ids, mask = _encode(tok, texts[:8], 48, "cpu")
        total, count = token_nll(untouched, ids, mask)
        with base_view(model, snapshot) as base:
            through, _ = token_nll(base, ids, mask)
    # QLoRA: the 4-bit base as the method runs it (harness/methods/quantized.py keeps dequantized weights)
    # sums in another order than a fresh 4-bit load: equal to float32 rounding, not bit for bit
    torch.testing.assert_close(through, total, rtol=1e-4 if method_name == "qlora" else 0, atol=1e-5)
    assert found["documents"] == 24 and found["drift_examples"] == 8
    if method_name in IDENTITY:
        assert found["forgetting"] == pytest.approx(0.0, abs=1e-6)
        assert found["drift"] == pytest.approx(0.0, abs=1e-7)
    else:  # a soft prompt changes the outputs from its start: honest figures are not 0, and before is still the base
        assert method_name in SOFT
        assert abs(found["forgetting"]) > 1e-4 and found["drift"] > 1e-5
    if snapshot is not None:
        snapshot.close()


@pytest.mark.parametrize("method_name", ENCODER_METHODS)
def test_encoders_with_no_training_step_have_no_representation_drift(method_name):
    model, tok, _ = _setup("tiny-bert", "sequence_classification", method_name)
    snapshot = None if is_peft(model) else Snapshot(model)
    found = measure(model, tok, spec=SPEC, causal_lm=False, snapshot=snapshot, drift_rows=None, device="cpu",
                    seconds=0.0)
    assert found["measure"] == "representation" and found["documents"] == 24
    if method_name in IDENTITY:
        assert found["representation_drift"] == pytest.approx(0.0, abs=1e-6)
    else:
        assert found["representation_drift"] > 1e-6


def test_linear_cka_is_one_for_a_rotation_and_scaling_and_low_for_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(50, 8, generator=g)) < 0.5


def _train(model, tok, steps: int, lr: float):
    """A few steps of plain next-token training on the task-like text, in place."""
    ids, mask = _encode(tok, ["the answer is yes and the question is no"] * 4, 16, "cpu")
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def test_training_shows_as_forgetting_and_drift_and_the_swap_puts_the_trained_weights_back():
    model, tok, untouched = _setup("tiny-llama", "causal_lm", "full")
    snapshot = Snapshot(model)
    _train(model, tok, steps=20, lr=0.5)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = [list(r) for r in tok(_texts(8), truncation=True, max_length=32)["input_ids"]]
    found = measure(model, tok, spec=SPEC, causal_lm=True, snapshot=snapshot, drift_rows=rows, device="cpu",
                    seconds=0.0)
    assert found["forgetting"] > 0 and found["drift"] > 0 and found["forgetting_se"] > 0
    assert all(torch.equal(p, trained[n]) for n, p in model.named_parameters())
    with torch.no_grad():  # "before" through the swap is the untouched model on the same 24 documents
        per_doc = []
        for start in range(0, 24, 8):
            total, count = token_nll(untouched, *_encode(tok, _texts()[start:start + 8], 48, "cpu"))
            per_doc += (total / count).tolist()
    assert found["before_nll"] == pytest.approx(sum(per_doc) / 24, abs=1e-5)
    snapshot.close()


def test_the_time_cap_reads_the_minimum_and_a_generous_one_reads_every_document():
    model, tok, _ = _setup("tiny-llama", "causal_lm", "lora")
    spec = RetentionSpec(documents=40, min_documents=8, max_tokens=32, batch_size=4)
    quick = measure(model, tok, spec=spec, causal_lm=True, snapshot=None, drift_rows=None, device="cpu", seconds=0.0)
    slow = measure(model, tok, spec=spec, causal_lm=True, snapshot=None, drift_rows=None, device="cpu", seconds=60)
    assert quick["documents"] == 8 and slow["documents"] == 40
    assert Clock(0.0, 3).more(2) and not Clock(0.0, 3).more(3)


def test_retention_data_from_local_files_and_config_problems(tmp_path, write_suite):
    from harness.config.loader import load_suite
    from harness.errors import UserError
    from harness.spec import RetentionText

    (tmp_path / "wiki.jsonl").write_text("\n".join(json.dumps({"body": f"document number {i} about things"})
                                                   for i in range(30)), encoding="utf-8")
    spec = RetentionSpec(data=RetentionText(files=["wiki.jsonl"], column="body"), documents=10)
    texts, source = retention_texts(spec, str(tmp_path))
    assert len(texts) == 10 and source == "wiki.jsonl" and all(t.startswith("document number") for t in texts)
    path = write_suite("""\
name: r
models: [{source: builtin:tiny-llama}]
tasks: [{name: s, kind: summarization, data: {builtin: dialogsum-mini}}]
methods: [{name: lora}]
retention:
  data: {files: [missing.jsonl]}
  documnets: 3
""")
    with pytest.raises(UserError) as info:
        load_suite(path)
    text = str(info.value)
    assert "missing.jsonl" in text and "documnets" in text and ":6" in text


@pytest.mark.e2e  # lm-eval's import and task building take ~20 s
def test_lm_eval_before_and_after_offline_through_a_local_task(tmp_path):
    from harness.measure.lm_eval import before_and_after

    rows = [{"question": "the sky is", "choices": ["blue", "green"], "answer": 0},
            {"question": "grass is", "choices": ["blue", "green"], "answer": 1},
            {"question": "snow is", "choices": ["white", "black"], "answer": 0},
            {"question": "coal is", "choices": ["white", "black"], "answer": 1}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (tmp_path / "tiny_choice.yaml").write_text(f"""\
task: tiny_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {tmp_path / 'data.jsonl'}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_target: answer
doc_to_choice: choices
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""", encoding="utf-8")
    spec = LmEvalSpec(tasks=["tiny_choice"], include_path=str(tmp_path), batch_size=4)
    model, tok, _ = _setup("tiny-llama", "causal_lm", "lora")
    found = before_and_after(model, lambda: base_view(model, None), tok, spec, device="cpu")
    acc = found["tiny_choice"]["acc"]
    assert acc["before"] == acc["after"] and acc["change"] == 0.0  # LoRA before a step: the base
    full, tok, _ = _setup("tiny-llama", "causal_lm", "full")
    snapshot = Snapshot(full)
    _train(full, tok, steps=10, lr=0.5)
    moved = before_and_after(full, lambda: base_view(full, snapshot), tok, spec, device="cpu")
    assert moved["tiny_choice"]["acc"]["before"] == acc["before"]  # before: the same base, through the swap
    assert set(moved["tiny_choice"]) >= {"acc", "se:acc"}
    snapshot.close()


@pytest.mark.e2e
def test_a_sweep_records_retention_and_the_report_leads_with_it(tmp_path, write_suite, capsys):
    """A real sweep on the tiny decoder: every trained run keeps its forgetting and drift, within the
    time cap past the minimum; the terminal and the page show them; the untrained baseline has none."""
    from harness.cli import main
    from harness.records.store import open_store

    path = write_suite("""\
name: forgets
models: [{source: 'builtin:tiny-llama', max_length: 64}]
tasks: [{name: dialog, kind: summarization, data: {builtin: dialogsum-mini, train_size: 32, test_size: 8}}]
methods: [{name: full}, {name: lora}, {name: prompt_tuning}]
search: {trials_per_cell: 1, seed: 0, strategy: none}
training: {max_steps: 4, batch_size: 8, eval_batch_size: 8}
confirm: {seeds: 2}
retention: {min_documents: 8, drift_examples: 8}
runner: {isolation: inline}
""")
    code = main(["run", str(path), "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")])
    assert code == 0
    out = capsys.readouterr().out
    assert "forgets" in out
    records = open_store(tmp_path / "results" / "forgets").load_all()
    trained = [r for r in records if r.method_family != "baseline" and r.status == "complete"]
    assert len(trained) == 9  # 3 methods x (1 search + 2 seeds)
    for r in trained:
        ret = r.retention
        assert ret is not None and ret.error is None and ret.measure == "nll", (r.method, ret)
        assert ret.documents >= 8 and ret.drift_examples >= 8 and ret.forgetting is not None
        assert ret.forgetting == pytest.approx(ret.after_nll - ret.before_nll, abs=1e-9)
        assert r.timing.retention_s >= ret.seconds > 0 and ret.base.startswith("the base")
    assert all(r.retention is None for r in records if r.method_family == "baseline")
    # the base's NLL is measured once per model: later runs read it from results/<suite>/retention
    assert any(r.retention.cached_documents == r.retention.documents for r in trained)
    assert list((tmp_path / "results" / "forgets" / "retention").glob("base-*.json"))
    page = (tmp_path / "reports" / "forgets" / "index.html").read_text(encoding="utf-8")
    assert "Learning vs forgetting" in page and "forgetting, nats/token [95% CI]" in page


def test_the_base_is_measured_once_per_model_and_read_back_bit_for_bit(tmp_path):
    from harness.measure.retention import BaseCache

    model, tok, _ = _setup("tiny-llama", "causal_lm", "lora")
    _train(model, tok, steps=5, lr=0.05)
    first_cache = BaseCache(tmp_path, model="tiny-llama", variant="as loaded")
    first = measure(model, tok, spec=SPEC, causal_lm=True, snapshot=None, drift_rows=None, device="cpu",
                    seconds=0.0, cache=first_cache)
    assert first["cached_documents"] == 0 and first_cache.path.exists()
    again = measure(model, tok, spec=SPEC, causal_lm=True, snapshot=None, drift_rows=None, device="cpu",
                    seconds=0.0, cache=BaseCache(tmp_path, model="tiny-llama", variant="as loaded"))
    assert again["cached_documents"] == again["documents"] == 24
    assert again["before_nll"] == first["before_nll"] and again["forgetting"] == first["forgetting"]
    other = BaseCache(tmp_path, model="tiny-llama", variant={"method": "qlora"})  # its own base: its own file
    assert other.path != first_cache.path and other.get(0) is None
