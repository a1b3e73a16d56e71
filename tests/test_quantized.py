"""bitsandbytes' two CPU paths for 4-bit layers, each forced, so no test passes or fails by the CPU it
lands on: the generic path (dequantize + float matmul) that QLoRA uses by default, and the packed
AVX512-BF16 kernel that bitsandbytes otherwise switches to by itself in evaluation on such CPUs."""

from __future__ import annotations

import pytest
import torch

from harness.spec import ModelSpec
from harness.methods import METHODS, ApplyContext
from harness.methods.quantized import host_has_avx512_bf16, packable, pin_cpu_4bit_path
from harness.models import BUILTIN_MODELS
from harness.runner.prepare import load_model

QLORA = METHODS.get("qlora")
CTX = ApplyContext("SEQ_CLS", ("score",), "llama", max_steps=10, device="cpu")


def _quantized_llama(params):
    source = str(BUILTIN_MODELS.get("tiny-llama").locate())
    torch.manual_seed(0)
    model, _ = load_model(source, ModelSpec(source=source), "sequence_classification", ["neg", "pos"],
                          **QLORA.load_kwargs(params, CTX))
    return model


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 60, (4, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _layers(model):
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _train_then_eval(model, steps: int = 3):
    batch = _batch()
    labels = torch.tensor([0, 1, 1, 0])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    logits = []
    for _ in range(2):  # train, evaluate, train again, evaluate again: as with in-loop validation
        model.train()
        for _ in range(steps):
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            logits.append(model(**batch).logits)
    return logits


def test_generic_path_computes_what_a_cpu_without_avx512_bf16_computes(monkeypatch):
    params = QLORA.params()
    assert params.cpu_4bit_kernel == "generic"
    model = _quantized_llama(params)
    torch.manual_seed(1)
    model = QLORA.build(model, params, CTX)
    pinned = _train_then_eval(model)
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in _layers(model))
    # A host without AVX512-BF16, whatever this one has: bitsandbytes reads the flag per layer.
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: False)
    model = _quantized_llama(params)
    assert not any(m.support_avx512bf16_for_cpu for m in _layers(model))
    torch.manual_seed(1)
    plain = _train_then_eval(QLORA.apply(model, params, CTX))  # no pinning: the host's own path
    for a, b in zip(pinned, plain):
        assert torch.equal(a, b)


def test_packed_path_packs_only_the_layers_its_kernel_takes():
    params = QLORA.params.model_validate({"cpu_4bit_kernel": "packed"})
    model = _quantized_llama(params)
    layers = _layers(model)
    # tiny-llama's widths (64, 128; k/v 32) suit the kernel: every 4-bit layer is packable
    assert layers and all(packable(m) for m in layers)
    narrow = layers[0]
    narrow.out_features = 48  # as a layer of width 48 would be (the kernel needs multiples of 32)
    counts = pin_cpu_4bit_path(model, packed=True)
    assert counts == {"packed": len(layers) - 1, "generic": 1}
    assert narrow.support_avx512bf16_for_cpu is False
    narrow.out_features = 64


def test_packed_layout_round_trips_on_any_cpu():
    # The layout conversion is plain torch, so it runs on every CPU; only the kernel needs AVX512-BF16.
    import copy

    from bitsandbytes.functional import _convert_weight_packed_for_cpu, _convert_weight_packed_for_cpu_inverse

    params = QLORA.params.model_validate({"cpu_4bit_kernel": "packed", "double_quant": False})
    layer = _layers(_quantized_llama(params))[0]
    data, state = layer.weight.data.clone(), copy.deepcopy(layer.weight.quant_state)
    packed, packed_state = _convert_weight_packed_for_cpu(data.clone(), copy.deepcopy(state))
    assert packed.shape == (layer.out_features, layer.in_features // 2)
    back, _ = _convert_weight_packed_for_cpu_inverse(packed, packed_state)
    assert torch.equal(back.view(torch.uint8), data.view(torch.uint8))


@pytest.mark.skipif(not host_has_avx512_bf16(), reason="the packed kernel needs AVX512-BF16; its layout and "
                                                       "layer choice are tested above on every CPU")
def test_packed_kernel_evaluates_close_to_generic_and_training_gets_exact_weights_back():
    generic = QLORA.params()
    packed = QLORA.params.model_validate({"cpu_4bit_kernel": "packed"})
    model = _quantized_llama(generic)
    torch.manual_seed(1)
    a = _train_then_eval(QLORA.build(model, generic, CTX))
    model = _quantized_llama(packed)
    torch.manual_seed(1)
    model = QLORA.build(model, packed, CTX)
    before = {id(m): m.weight.data.clone() for m in _layers(model)}
    b = _train_then_eval(model)
    # evaluation ran the bf16 kernel (close, not equal); the layers are packed now
    assert any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in _layers(model))
    torch.testing.assert_close(b[0], a[0], atol=0.05, rtol=0.05)
    # training restores the exact unpacked weights (bitsandbytes' own inverse would round the scales)
    model.train()
    model(**_batch(), labels=torch.tensor([0, 1, 1, 0])).loss.backward()
    for m in _layers(model):
        assert not getattr(m.weight.quant_state, "packing_format_for_cpu", False)
        assert torch.equal(m.weight.data, before[id(m)])


def test_packed_kernel_is_refused_where_the_cpu_lacks_it(monkeypatch):
    import harness.methods.quantized as quantized

    monkeypatch.setattr(quantized, "host_has_avx512_bf16", lambda: False)
    packed = QLORA.params.model_validate({"cpu_4bit_kernel": "packed"})
    assert "AVX512-BF16" in QLORA.check_params(packed)
    assert QLORA.check_params(QLORA.params()) is None
