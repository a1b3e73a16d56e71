"""harness estimate: the simulated step against a real one, the arithmetic parts, config-only
models, and the sweep's use of it (skipped cells, micro_batch_size: auto, records, calibration)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.estimate import estimate, target_for
from harness.estimate.parts import optimizer_bytes, quantized_weight_bytes
from harness.estimate.simulate import PeakTracker, StepShape, build_meta_model, simulate
from harness.methods import METHODS, ApplyContext
from harness.records.store import FileRecordStore
from harness.spec import TrialTraining, parse_bytes
from harness.tasks.heads import HEADS

LLAMA = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=500, max_position_embeddings=256)


def llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(**{k: v for k, v in LLAMA.items() if k != "model_type"})


def sim(name: str, micro: int = 4, seq: int = 64, head: str = "causal_lm", **shape):
    method = METHODS.get(name)
    ctx = ApplyContext(HEADS.get(head).peft_task_type, (), "llama", 10, "cpu")
    return simulate(llama_config(), HEADS.get(head), 2, method, method.params(), ctx,
                    StepShape(micro, seq, "float32", method.training.get("optim", "adamw_torch"), **shape))


def real_step_peak(name: str, micro: int = 4, seq: int = 64) -> dict:
    """The same step on real tensors (CPU), watched by the same tracker: what fake tensors stand for."""
    import torch

    torch.manual_seed(0)
    method = METHODS.get("full" if name == "full" else name)
    config = llama_config()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    model = method.apply(model, method.params(), ApplyContext("CAUSAL_LM", (), "llama", 10, "cpu"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=False)
    ids = torch.randint(0, 500, (micro, seq))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

    def step():
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    tracker = PeakTracker(params, opt)
    for t in (*model.parameters(), *model.buffers(), *(v for st in opt.state.values() for v in st.values())):
        tracker.add(t)
    static = tracker.total
    with tracker.mode():
        step()
    return {"activations": tracker.peak_total - static - tracker.peak["gradients"], **tracker.peak}


@pytest.mark.parametrize("name", ["full", "lora"])
def test_fake_step_matches_the_real_step(name):
    """The simulation on fake tensors sees the same tensors a real CPU step allocates."""
    fake, real = sim(name).peak, real_step_peak(name)
    assert fake["optimizer"] == real["optimizer"] and fake["gradients"] == real["gradients"]
    assert abs(fake["activations"] - real["activations"]) <= 0.02 * real["activations"]


def test_parts_follow_the_arithmetic_of_each_method():
    full, lora = sim("full"), sim("lora")
    trainable = sum(n for _, n, _ in full.trainable)
    # AdamW: two float32 states per trained parameter, and a float32 step count per tensor
    assert full.peak["optimizer"] == 2 * 4 * trainable + 4 * len(full.trainable)
    lora_trainable = sum(n for _, n, _ in lora.trainable)
    assert lora.peak["optimizer"] == 2 * 4 * lora_trainable + 4 * len(lora.trainable)
    assert lora_trainable < trainable / 5
    assert lora.peak["parameters"] > full.peak["parameters"]  # the adapters on top of the same base
    # 4-bit NF4 with double quantization: half a byte per weight plus 1 byte per block of 64 (+ 8 per 256 blocks)
    packed, constants = quantized_weight_bytes(64 * 128, 4, True, 128)
    assert packed == 64 * 128 // 2 and constants == 128 + 8
    assert quantized_weight_bytes(64 * 128, 4, False, 128)[1] == 4 * 128
    # paged 8-bit AdamW: 2 bytes per trained parameter plus a float32 absmax per 256 (small tensors stay 32-bit)
    assert optimizer_bytes("paged_adamw_8bit", [("a", 8192, "float32"), ("b", 100, "float32")], 0) == (
        2 * (8192 + 4 * 32) + 8 * 100, True)


def test_activations_scale_with_the_batch_and_checkpointing_lowers_them():
    one, two = sim("full", micro=2), sim("full", micro=4)
    assert 1.8 < two.peak["activations"] / one.peak["activations"] < 2.2
    checkpointed = sim("full", micro=4, gradient_checkpointing=True)
    assert checkpointed.peak["activations"] < 0.7 * two.peak["activations"]


@pytest.mark.e2e
def test_qlora_counts_its_base_packed():
    """QLoRA's frozen Linear layers are counted at 4 bits with their constants; the lm_head stays."""
    method = METHODS.get("qlora")
    flat = {**method.defaults}
    est = estimate("c", method, flat, TrialTraining(batch_size=4, optim=flat["optim"]), config=llama_config(),
                   head=HEADS.get("causal_lm"), num_labels=0, seq_len=64, dtype="float32",
                   target=target_for("cpu", None, parse_bytes("1GiB"), None), find_max=False)
    lora = estimate("c", METHODS.get("lora"), {**METHODS.get("lora").defaults}, TrialTraining(batch_size=4),
                    config=llama_config(), head=HEADS.get("causal_lm"), num_labels=0, seq_len=64, dtype="float32",
                    target=target_for("cpu", None, parse_bytes("1GiB"), None), find_max=False)
    linear = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128)  # per layer: q,o (64x64), k,v (64x32), gate,up,down
    assert lora.parts["weights"] - est.parts["weights"] == pytest.approx(linear * 4 - linear / 2, abs=64)
    assert est.parts["quantization_constants"] > 0 and est.fits is True


def test_meta_build_reads_no_weights(tmp_path):
    """The model is built on the meta device from its config: no byte of weights is needed."""
    model = build_meta_model(llama_config(), HEADS.get("causal_lm"), 0, "float32", "sdpa")
    assert all(p.is_meta for p in model.parameters())


def _config_only_suite(tmp_path, limit: str | None = None, micro: str | None = None):
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**LLAMA, "architectures": ["LlamaForCausalLM"]}))
    runner = f"runner: {{memory_limit: {limit}}}\n" if limit else ""
    training = f", micro_batch_size: {micro}" if micro else ""
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""name: est
models: [{{source: ./config-only, max_length: 64}}]
tasks: [{{name: s, kind: classification, data: {{builtin: sentiment}}}}]
methods: [{{name: full}}, {{name: lora}}, {{name: qlora}}, {{name: ia3}}, {{name: prompt_tuning}}]
training: {{batch_size: 16{training}}}
{runner}""")
    return suite


def test_estimate_json_from_a_folder_with_only_config_json(tmp_path, capsys):
    suite = _config_only_suite(tmp_path)
    assert main(["estimate", str(suite), "--json", "--gpu", "a10g"]) == 0
    out = json.loads(capsys.readouterr().out)
    cells = {c["method"]: c for c in out["cells"]}
    assert set(cells) == {"full", "lora", "qlora", "ia3", "prompt_tuning"}  # no row for the baselines
    for c in cells.values():
        assert {"cell_id", "method", "micro_batch", "seq_len", "predicted_peak_bytes", "parts", "fits",
                "max_micro_batch", "predicted_tokens_per_s"} <= set(c)
        assert c["predicted_peak_bytes"] == sum(v for k, v in c["parts"].items()
                                                if k not in ("cuda_context", "optimizer_states_paged"))
        assert c["fits"] is True and c["max_micro_batch"] > 16 and c["predicted_tokens_per_s"] > 0
    assert out["target"]["memory_limit_bytes"] == 23028 * 2**20
    assert cells["full"]["parts"]["optimizer_states"] > 10 * cells["lora"]["parts"]["optimizer_states"]


def test_bad_gpu_memory_is_a_clean_error(tmp_path, capsys):
    suite = _config_only_suite(tmp_path)
    assert main(["estimate", str(suite), "--gpu-memory", "lots"]) == 2
    assert "--gpu-memory" in capsys.readouterr().err


def test_a_cuda_plan_on_a_machine_without_a_gpu(tmp_path, capsys, monkeypatch):
    """device: cuda planned where NVML has no library (a laptop): --gpu-memory is used as given, and
    without it the message names --gpu; never pynvml's traceback."""
    import pynvml

    import harness.estimate as est

    def no_nvml():
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(est, "_visible_gpu", no_nvml)  # whatever this host has, it reads as a laptop
    suite = _config_only_suite(tmp_path)
    suite.write_text(suite.read_text().replace("training: {batch_size: 16", "training: {device: cuda, batch_size: 16"))
    assert main(["estimate", str(suite), "--gpu-memory", "80GiB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"]["memory_limit_bytes"] == 80 * 2**30 and out["target"]["device"] == "cuda"
    assert all(c["fits"] is True and c["predicted_tokens_per_s"] is None for c in out["cells"])
    assert main(["estimate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "--gpu KIND" in err and "Traceback" not in err


@pytest.mark.e2e
def test_sweep_skips_what_does_not_fit_and_fits_auto_micro_batches(tmp_path, capsys, monkeypatch):
    """Under a memory limit too small for full fine-tuning at micro-batch 1, its cell is a skipped
    record with the prediction (the run still exits 0, the leaderboard lists it); LoRA with
    micro_batch_size: auto trains at the largest divisor of the batch predicted to fit; every record
    carries its prediction beside the measurement; calibration reads them back."""
    from harness.estimate import parts

    # the host's allocator model, fixed so that the limit is exact on every machine
    monkeypatch.setitem(parts._PROBED, "cpu", parts.CpuAllocator(runtime_bytes=2**19, factor=1.0, points=()))
    suite = tmp_path / "s.yaml"
    suite.write_text("""name: est
models: [{source: "builtin:tiny-bert", max_length: 64}]
tasks: [{name: s, kind: classification, data: {builtin: sentiment, train_size: 64, validation_size: 32, test_size: 32}}]
methods: [{name: full}, {name: lora}]
search: {trials_per_cell: 1, sampler: none}
references: false
training: {max_steps: 3, batch_size: 16, micro_batch_size: auto}
runner: {memory_limit: 3MiB, isolation: inline}
""")
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")])
    out = capsys.readouterr()
    assert code == 0
    records = {r.method: r for r in FileRecordStore(tmp_path / "results" / "est").load_all()}
    full, lora = records["full"], records["lora"]
    assert full.status == "skipped" and "predicted not to fit" in full.reason
    assert full.estimate["fits"] is False and full.estimate["predicted_peak_bytes"] > 3 * 2**20
    assert "skipped" in out.out and "s--tiny-bert--full skipped: predicted not to fit" in out.err
    assert lora.status == "complete" and lora.estimate["fits"] is True
    micro = lora.params["micro_batch_size"]
    assert 16 % micro == 0 and micro <= lora.estimate["max_micro_batch"] < 16
    assert lora.estimate["micro_batch"] == micro and lora.memory.train_bytes > 0

    from harness.estimate.suite import calibrate

    calibration = calibrate(list(records.values()))
    assert list(calibration["activation_factor"]) == ["lora"] and calibration["methods"][0]["records"] == 1


def test_calibration_fits_factor_and_offset_and_the_cli_reports_it(tmp_path, capsys):
    from harness.records.synthetic import make_record

    store = FileRecordStore(tmp_path / "results")
    mib = 2**20
    for i, activations in enumerate((100, 200, 400)):
        r = make_record(method="lora", trial=i)
        r.estimate = {"predicted_peak_bytes": (300 + activations) * mib, "parts": {"activations": activations * mib}}
        r.memory.train_bytes = (300 + 50 + int(1.5 * activations)) * mib  # 50 MiB the device adds, 1.5x activations
        store.write(r)
    assert main(["estimate", "--calibrate", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "lora: x1.500 + +50 MiB (moved +50.0%; 3 records" in out and "-> 0.0%" in out
    saved = json.loads((tmp_path / "results" / "estimate-calibration.json").read_text())
    assert saved["activation_factor"] == {"lora": 1.5} and saved["offset_bytes"]["lora"] == 50 * mib

    bare = FileRecordStore(tmp_path / "old")
    bare.write(make_record(method="lora"))  # written before estimates existed
    assert main(["estimate", "--calibrate", str(tmp_path / "old")]) == 2
    assert "no complete trial record carries an estimate" in capsys.readouterr().err
