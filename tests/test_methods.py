"""The method contract: every registered method, on a tiny encoder and a tiny decoder built in code.
A few steps lower the loss; frozen base weights stay bit-identical; only what the method should
train trains; save + reload reproduces the outputs; mergeable methods merge to the same logits.

Adding a method: add its entry to TRAINS below (what it is allowed to train)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from harness.spec import ModelSpec
from harness.methods import METHODS, ApplyContext
from harness.methods.artifacts import load_trained, save_trained
from harness.models import BUILTIN_MODELS
from harness.runner.prepare import load_model
from harness.methods.base import ModelInfo

HEAD = r"(^|\.)(classifier|score)\."
# What each method may train (besides the task head), as a regex over parameter names.
TRAINS = {
    "full": r".",
    "bitfit": r"\.bias$",
    "ln_tuning": r"(?i)norm",
    "top_layers": r"layers?\.1\.|(^|\.)norm\.",  # tiny models have 2 layers; top_k=1 below
    "lora": r"lora_", "qlora": r"lora_", "lora_8bit": r"lora_", "adalora": r"lora_",
    "vera": r"vera_lambda", "loha": r"hada_", "lokr": r"lokr_", "oft": r"oft_",
    "ia3": r"ia3_", "prompt_tuning": r"prompt_encoder", "p_tuning": r"prompt_encoder",
    "prefix_tuning": r"prompt_encoder",
    "adapter_houlsby": r"\.adapter_(down|up)\.", "adapter_pfeiffer": r"\.adapter_(down|up)\.",
}
OVERRIDES = {"top_layers": {"top_k": 1}}
LEARNING_RATE = 1e-3
MODELS = {"tiny-bert": ModelInfo("bert", False), "tiny-llama": ModelInfo("llama", True)}
HEAD_KIND = "sequence_classification"
# (model, head): an encoder and a decoder with a classification head, and the decoder as a causal LM
SETUPS = (("tiny-bert", "sequence_classification"), ("tiny-llama", "sequence_classification"),
          ("tiny-llama", "causal_lm"))


TRAINING = [name for name in METHODS if METHODS.get(name).trains]


def test_every_method_has_a_contract_entry():
    assert sorted(TRAINS) == sorted(TRAINING)
    # the baseline rows (untrained model, trivial predictor) train nothing and search nothing
    baselines = sorted(set(METHODS.names()) - set(TRAINING))
    assert baselines == ["none", "trivial"]
    for name in baselines:
        assert METHODS.get(name).space() == {} and METHODS.get(name).family == "baseline"


def test_every_learning_rate_range_spans_the_same_factor_around_the_default():
    from harness.methods.base import LR_FACTOR

    for name in TRAINING:
        method = METHODS.get(name)
        dim, default = method.space()["learning_rate"], method.training["learning_rate"]
        assert dim.log and dim.low * LR_FACTOR == pytest.approx(default) == pytest.approx(dim.high / LR_FACTOR)


def _cases():
    for model, head in SETUPS:
        for name in TRAINING:
            reason = METHODS.get(name).check(MODELS[model], head)
            yield pytest.param(model, head, name, marks=pytest.mark.skipif(bool(reason), reason=str(reason)),
                               id=f"{model}-{head}-{name}")


def _ctx(model_name: str, head: str) -> ApplyContext:
    if head == "causal_lm":
        return ApplyContext("CAUSAL_LM", (), MODELS[model_name].model_type, max_steps=30)
    return ApplyContext("SEQ_CLS", ("classifier",) if model_name == "tiny-bert" else ("score",),
                        MODELS[model_name].model_type, max_steps=30)


def _base(model_name: str, head: str, method):
    source = str(BUILTIN_MODELS.get(model_name).locate())
    extra = method.load_kwargs(_params(method), _ctx(model_name, head)) if method.load_kwargs else {}
    torch.manual_seed(0)
    labels = ["negative", "positive"] if head == "sequence_classification" else []
    model, _ = load_model(source, ModelSpec(source=source), head, labels, **extra)
    return model


def _params(method):
    """The method's own typed parameters: its defaults, with the overrides above."""
    return method.params.model_validate(OVERRIDES.get(method.name, {}))


def _normal(name: str, known: dict) -> str:
    """A parameter's name as the base model knew it, before peft wrapped the module (peft prefixes
    base_model.model. for tuners and base_model. for prompt learning)."""
    name = name.replace(".base_layer", "").replace(".original_module", "").replace(".projection", "")
    for prefix in ("base_model.model.", "base_model."):
        if name.startswith(prefix) and name[len(prefix):] in known:
            return name[len(prefix):]
    return name


def _batch(head: str):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 60, (8, 12), generator=g)
    if head == "causal_lm":
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    # Unbalanced labels: even a method whose outputs cannot yet tell inputs apart has a lower loss to reach.
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([1, 1, 1, 0, 1, 1, 0, 1])}


@pytest.mark.parametrize("model_name,head,method_name", list(_cases()))
def test_method_contract(model_name, head, method_name, tmp_path):
    warnings.filterwarnings("ignore")
    method = METHODS.get(method_name)
    params = _params(method)
    base = _base(model_name, head, method)
    frozen_before = {n: p.detach().clone() for n, p in base.named_parameters()}
    ctx = _ctx(model_name, head)
    torch.manual_seed(0)
    model = method.build(base, params, ctx)
    batch = _batch(head)

    # only what the method should train trains, and something does
    trainable = {_normal(n, frozen_before): p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "the method trains nothing"
    allowed = re.compile(TRAINS[method_name])
    wrong = [n for n in trainable if not (allowed.search(n) or re.search(HEAD, n) or "modules_to_save" in n)]
    assert not wrong, f"{method_name} trains parameters it should not: {wrong[:5]}"
    total = sum(p.numel() for p in frozen_before.values())
    if method_name == "full":
        assert sum(trainable.values()) == total

    # a few steps lower the loss (eval mode: no dropout, so the loss is a function of the weights)
    model.eval()
    own = {n: p.detach().clone() for n, p in model.named_parameters()
           if p.requires_grad and not re.search(HEAD, _normal(n, frozen_before)) and "modules_to_save" not in n}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    losses = []
    for step in range(30):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        if method.on_optimizer_step:
            method.on_optimizer_step(model, step)
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}"
    # and the method's own parameters (not just the task head) were trained
    current = dict(model.named_parameters())
    assert own and any(not torch.equal(current[n].detach(), before) for n, before in own.items()), \
        "the method's own parameters did not change"

    # every frozen base weight is bit-identical
    after = {_normal(n, frozen_before): p for n, p in model.named_parameters() if not p.requires_grad}
    checked = 0
    for name, before in frozen_before.items():
        if name in after and not re.search(HEAD, name):
            assert torch.equal(after[name].detach().cpu(), before), f"frozen weight {name} changed"
            checked += 1
    if method_name != "full":
        assert checked > 0

    # save, reload onto a fresh base, same outputs
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    save_trained(model, tmp_path / "artifact")
    reloaded = load_trained(_base(model_name, head, method), tmp_path / "artifact", method, params, ctx)
    reloaded.eval()
    with torch.no_grad():
        again = reloaded(**{k: v for k, v in batch.items() if k != "labels"}).logits
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-5)

    # where the update folds into the weights, merged logits match
    if method.can_merge:
        merged = model.merge_and_unload()
        with torch.no_grad():
            merged_logits = merged(**{k: v for k, v in batch.items() if k != "labels"}).logits
        torch.testing.assert_close(merged_logits, logits, rtol=1e-3, atol=1e-4)


def test_inapplicable_methods_are_rejected_with_a_reason():
    assert "no bias terms" in METHODS.get("bitfit").check(MODELS["tiny-llama"], HEAD_KIND)
    assert "past_key_values" in METHODS.get("prefix_tuning").check(MODELS["tiny-bert"], HEAD_KIND)
    assert METHODS.get("prefix_tuning").check(MODELS["tiny-llama"], "causal_lm") is None
