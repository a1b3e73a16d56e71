"""The FLOPs model (harness/measure/flops.py) against PyTorch's own counter (FlopCounterMode) on one
real training step, per method and model, within 10%."""

from __future__ import annotations

import pytest
import torch

from harness.measure.flops import flop_check, flops_per_token
from harness.methods import METHODS, ApplyContext
from harness.models import BUILTIN_MODELS
from harness.runner.prepare import load_model
from harness.spec import ModelSpec

CASES = [(model, head, method) for model, head in (("tiny-bert", "sequence_classification"),
                                                    ("tiny-llama", "sequence_classification"),
                                                    ("tiny-llama", "causal_lm"))
         for method in ("full", "lora", "qlora", "top_layers", "prompt_tuning")]


def _model(model_name: str, head: str, method_name: str):
    method = METHODS.get(method_name)
    ctx = ApplyContext("SEQ_CLS" if head != "causal_lm" else "CAUSAL_LM",
                       ("classifier",) if model_name == "tiny-bert" else ("score",) if head != "causal_lm" else (),
                       "bert" if model_name == "tiny-bert" else "llama", max_steps=10)
    params = method.params.model_validate({"top_k": 1} if method_name == "top_layers" else {})
    source = str(BUILTIN_MODELS.get(model_name).locate())
    extra = method.load_kwargs(params, ctx) if method.load_kwargs else {}
    torch.manual_seed(0)
    model, _ = load_model(source, ModelSpec(source=source), head, ["neg", "pos"] if head != "causal_lm" else [], **extra)
    return method.build(model, params, ctx)


@pytest.mark.parametrize("model_name,head,method_name", CASES, ids=lambda x: str(x))
def test_flops_per_token_agrees_with_pytorchs_counter(model_name, head, method_name):
    model = _model(model_name, head, method_name)
    ids = torch.randint(10, 60, (4, 16), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": ids.clone() if head == "causal_lm" else torch.tensor([0, 1, 1, 0])}
    counted = flop_check(model, batch)
    modelled = flops_per_token(model, 16.0).per_token
    assert counted > 0
    assert modelled == pytest.approx(counted, rel=0.10), f"model {modelled:.4g} vs counted {counted:.4g}"


def test_a_4bit_weight_counts_at_its_logical_size_and_top_layers_stops_the_backward():
    full = flops_per_token(_model("tiny-llama", "causal_lm", "lora"), 16.0)
    quantized = flops_per_token(_model("tiny-llama", "causal_lm", "qlora"), 16.0)
    assert quantized.forward == pytest.approx(full.forward)  # not half: 4-bit storage is packed, not smaller work
    top = flops_per_token(_model("tiny-llama", "causal_lm", "top_layers"), 16.0)
    everything = flops_per_token(_model("tiny-llama", "causal_lm", "full"), 16.0)
    assert top.backward_activations < everything.backward_activations
    assert top.backward_weights < everything.backward_weights
