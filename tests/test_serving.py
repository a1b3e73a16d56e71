"""The serving profile (harness/measure/serving.py): per method family, the variants that should exist
do, merged equals unmerged where the method merges, the base variant computes what the untouched base
computes, soft prompts count their extra tokens; the engine file (harness/data/serving_engines.yaml)
covers every trained method with a source; the answer can prefer and cap serving cost."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from harness.measure.memory import model_bytes
from harness.measure.serving import Workload, logits, profile, structural_base
from harness.methods import METHODS, ApplyContext
from harness.models import BUILTIN_MODELS
from harness.runner.prepare import load_model
from harness.spec import ModelSpec

MERGE_TOLERANCE = 1e-4  # float32 logits, merged vs unmerged: the sum changes order, nothing else
TEXT = "the film was long and the ending was not what anyone hoped for, yet the music stayed with me"


def _setup(model_name: str, head: str, method_name: str, params: dict | None = None):
    warnings.filterwarnings("ignore")
    source = str(BUILTIN_MODELS.get(model_name).locate())
    decoder = head == "causal_lm"
    ctx = ApplyContext("CAUSAL_LM" if decoder else "SEQ_CLS", () if decoder else ("classifier",),
                       "llama" if decoder else "bert", max_steps=30)
    labels = [] if decoder else ["negative", "positive"]
    method = METHODS.get(method_name)
    params = method.params.model_validate(params or {})
    extra = method.load_kwargs(params, ctx) if method.load_kwargs else {}

    def load(**kwargs):
        torch.manual_seed(0)
        return load_model(source, ModelSpec(source=source), head, labels, **kwargs)

    base, tokenizer = load(**extra)
    untouched, _ = load()
    model = method.build(base, params, ctx)
    with torch.no_grad():  # a trained-looking update, so merging has something to fold in
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            if p.requires_grad and p.dtype.is_floating_point:
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model, tokenizer, untouched, method, params, lambda: load()[0]


def _work(tokenizer, generate: bool) -> Workload:
    rows = [tokenizer(TEXT)["input_ids"], tokenizer(TEXT[:60])["input_ids"], tokenizer(TEXT[10:])["input_ids"]]
    return Workload.of(rows, tokenizer.pad_token_id, generate=generate, batch=2, new_tokens=6, check_inputs=3)


# method, params -> the variants it must have, and what it ships
DECODER = [
    ("lora", {}, ["base", "adapter", "merged"], "merged"),
    ("lora", {"use_dora": True}, ["base", "adapter", "merged"], "merged"),
    ("ia3", {}, ["base", "adapter", "merged"], "merged"),
    ("prompt_tuning", {}, ["base", "adapter"], "adapter"),
    ("prefix_tuning", {}, ["base", "adapter"], "adapter"),
    ("adapter_houlsby", {}, ["base", "adapter"], "adapter"),
    ("ln_tuning", {}, ["base", "adapter", "merged"], "merged"),  # peft's LNTuning: merging swaps the trained norms in
    ("full", {}, ["base", "tuned"], "tuned"),
    ("qlora", {}, ["adapter", "quantized_base", "base", "merged"], "merged"),
]


@pytest.mark.parametrize("name,params,variants,ships", DECODER, ids=[f"{d[0]}{'-dora' if d[1] else ''}" for d in DECODER])
def test_each_decoder_family_gets_its_variants_and_merges_exactly(name, params, variants, ships):
    model, tok, untouched, method, typed, reload = _setup("tiny-llama", "causal_lm", name, params)
    work = _work(tok, generate=True)
    reference = logits(untouched, work.check, "cpu")
    if method.load_kwargs is None:  # the base variant computes what the untouched base computes
        with structural_base(model) as base:
            got = logits(base, work.check, "cpu")
            assert model_bytes(base) == model_bytes(untouched)
        if name != "full":  # full fine-tuning's base variant is its own (trained) layers
            assert max(float((a - b).abs().max()) for a, b in zip(got, reference)) < 1e-5
    out = profile(model, method=method, params=typed, work=work, device="cpu", rounds=2, seconds=120.0,
                  reload_base=reload)
    assert [v["name"] for v in out["variants"]] == variants and out["ships"] == ships
    for v in out["variants"]:
        # a tiny model decodes in about a millisecond: the figures exist and are not negative (their size is
        # for benchmarks/serving runs on real models, not for a unit test)
        assert v["decode_ms_per_token"] >= 0 and v["prefill_tokens_per_s"] > 0 and v["weights_bytes"] > 0
        assert v["rounds"] == 2 and (v["decode_tokens_per_s_batch"] is None or v["decode_tokens_per_s_batch"] > 0)
    base = next(v for v in out["variants"] if v["name"] == "base")
    assert base["overhead_pct"] in (0.0, None)
    if method.can_merge and method.load_kwargs is None:
        check = out["merge_check"]
        assert check["max_abs_diff"] < MERGE_TOLERANCE and check["predictions_changed"] == 0
        assert check["predictions"] == sum(len(r) for r in work.check)
        merged = next(v for v in out["variants"] if v["name"] == "merged")
        assert merged["weights_bytes"] == base["weights_bytes"]  # merged: the base's size, nothing added
    if name == "qlora":  # merged into a full-precision copy, against the 4-bit model it trained on
        assert "quantized" in out["merge_check"]["compared"] and math.isfinite(out["merge_check"]["max_abs_diff"])
        quantized = next(v for v in out["variants"] if v["name"] == "quantized_base")
        assert quantized["weights_bytes"] < base["weights_bytes"]
    assert out["extra_tokens"] == (16 if name == "prompt_tuning" else 0)
    assert out["cache_entries_per_layer"] == (16 if name == "prefix_tuning" else 0)


def _diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def test_qlora_merged_equals_its_adapter_on_the_full_precision_base():
    """The merged QLoRA variant is exact against its own adapter on the same full-precision base: what
    differs from the 4-bit model it trained on is the base's quantization, which the record keeps."""
    from harness.measure.serving import _attach, merged_view

    model, tok, _, _, _, reload = _setup("tiny-llama", "causal_lm", "qlora")
    rows = _work(tok, True).check
    attached = _attach(model, reload())
    unmerged = logits(attached, rows, "cpu")
    with merged_view(attached) as merged:
        assert not any("lora" in n for n, _ in merged.named_parameters())
        got = logits(merged, rows, "cpu")
    assert _diff(got, unmerged) < MERGE_TOLERANCE
    assert _diff(logits(attached, rows, "cpu"), unmerged) < 1e-5  # unmerged again after the view


@pytest.mark.parametrize("head,name", [("causal_lm", "lora"), ("sequence_classification", "lora"),
                                       ("causal_lm", "ia3")])
def test_the_merged_view_is_what_merge_and_unload_gives(head, name):
    """The profile times the merged model through merge_adapter with the wrappers swapped out (so every
    variant can be timed in turns); it must compute what merge_and_unload returns, trained head included."""
    import copy

    from harness.measure.serving import merged_view

    model, tok, _, _, _, _ = _setup("tiny-llama" if head == "causal_lm" else "tiny-bert", head, name)
    rows = _work(tok, head == "causal_lm").check
    expected = logits(copy.deepcopy(model).merge_and_unload(), rows, "cpu")
    with merged_view(model) as merged:
        assert _diff(logits(merged, rows, "cpu"), expected) < 1e-5


ENCODER = [("lora", ["base", "adapter", "merged"]), ("bitfit", ["base", "tuned"]),
           ("prompt_tuning", ["base", "adapter"]), ("qlora", ["adapter", "quantized_base", "base", "merged"])]


@pytest.mark.parametrize("name,variants", ENCODER, ids=[e[0] for e in ENCODER])
def test_each_encoder_family_is_timed_per_example(name, variants):
    model, tok, untouched, method, typed, reload = _setup("tiny-bert", "sequence_classification", name)
    work = _work(tok, generate=False)
    out = profile(model, method=method, params=typed, work=work, device="cpu", rounds=2, seconds=120.0,
                  reload_base=reload)
    assert out["mode"] == "forward" and [v["name"] for v in out["variants"]] == variants
    for v in out["variants"]:
        assert v["examples_per_s"] > 0 and v["examples_per_s_batch"] > 0 and v.get("decode_ms_per_token") is None
    if name == "lora":
        assert out["merge_check"]["max_abs_diff"] < MERGE_TOLERANCE
        assert out["merge_check"]["predictions"] == len(work.check)  # one class per input
    assert out["extra_tokens"] == (16 if name == "prompt_tuning" else 0)


def test_the_structural_base_is_put_back():
    model, tok, _, _, _, _ = _setup("tiny-llama", "causal_lm", "adapter_houlsby")
    rows = _work(tok, True).check
    before = logits(model, rows, "cpu")
    with structural_base(model) as base:
        assert not any(type(m).__name__ == "BottleneckAdapter" for m in base.modules())
    after = logits(model, rows, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_every_trained_method_has_an_engine_entry_with_a_source_and_a_date():
    import datetime
    import typing

    from harness.report.engines import SERVES, engine_file, support
    from harness.spec import LimitsSpec

    found = engine_file()
    datetime.date.fromisoformat(found.checked)
    trained = [m for m in METHODS.names() if METHODS.get(m).trains]
    missing = [m for m in trained if support(m) is None]
    assert not missing, f"methods without an entry in harness/data/serving_engines.yaml: {missing}"
    for method, entries in found.methods.items():
        assert method in trained or method == "lora+dora", method
        for engine, entry in entries.items():
            assert entry.serves in SERVES and found.url(entry).startswith(("https://", "harness/"))
    for engine in found.engines.values():
        assert engine.version and engine.docs.startswith("https://")
    allowed = typing.get_args(typing.get_args(LimitsSpec.model_fields["serve_with"].annotation)[0])
    assert set(allowed) == set(found.engines)
    assert support("lora", {"use_dora": True})["vllm"].serves == "merged"  # vllm-project/vllm#10849
    assert support("prompt_tuning")["vllm"].serves == "no"  # removed in vLLM 0.10 (#20588)


def _serving(ms: float, overhead: float, ships: str = "merged"):
    from harness.records.schema import Serving, ServingVariant

    return Serving(mode="generate", prompt_tokens=32, new_tokens=16, batch=4, device="cpu", ships=ships,
                   variants=[ServingVariant(name="base", decode_ms_per_token=10.0, overhead_pct=0.0,
                                            weights_bytes=100 * 2**20),
                             ServingVariant(name=ships, decode_ms_per_token=ms, overhead_pct=overhead,
                                            weights_bytes=100 * 2**20, working_bytes=2**20)])


def test_the_answer_can_prefer_serving_latency_and_cap_its_overhead():
    from harness.records.synthetic import make_record
    from harness.report.decide import Terms, answer, decision
    from harness.report.leaderboard import leaderboard
    from harness.spec import DecisionSpec

    serve = {"full": _serving(10.1, 1.0, "tuned"), "lora": _serving(10.0, 0.0),
             "prompt_tuning": _serving(14.0, 40.0, "adapter")}
    records = []
    for method, accs in (("full", [0.90, 0.92, 0.91]), ("lora", [0.901, 0.919, 0.911]),
                         ("prompt_tuning", [0.899, 0.921, 0.91])):
        records.append(make_record(method=method, accuracy=max(accs), peak_mib={"full": 500.0}.get(method, 100.0)))
        for s, a in enumerate(accs):
            r = make_record(method=method, seed=s + 1, accuracy=a, phase="confirm",
                            peak_mib={"full": 500.0, "prompt_tuning": 90.0}.get(method, 100.0))
            if s == 0:  # serving.runs first_confirmation
                r.serving = serve[method]
            records.append(r)
    board = leaderboard(records, 0.02)
    plain = answer(board, Terms(DecisionSpec(tolerance=0.02)))  # by train memory: prompt tuning, and its cost shows
    assert plain.startswith("Use prompt_tuning") and "Served adapter: 14.00 ms/token, +40% against the base" in plain
    fast = answer(board, Terms(DecisionSpec(tolerance=0.02, prefer=["serving_latency"])))
    assert fast.startswith("Use lora") and "Served merged: 10.00 ms/token" in fast
    capped = Terms(DecisionSpec(tolerance=0.02, limits={"serving_overhead": 10}))
    said = answer(board, capped)
    assert said.startswith("Use lora") and "prompt_tuning (serving overhead: +40% over the base, over 10%)" in said
    engine = Terms(DecisionSpec(tolerance=0.02, limits={"serve_with": "vllm"}))
    assert "prompt_tuning (serving: vLLM cannot serve it" in answer(board, engine)
    rows = {r["method"]: r for r in decision(records, capped)[0]["methods"]}
    assert rows["lora"]["serving"]["ships"] == "merged" and rows["lora"]["serving"]["ms"] == pytest.approx(10.0)
    assert rows["lora"]["serving"]["engines"]["vllm"] == "adapter" and rows["prompt_tuning"]["breaks"]


def test_profiled_runs_follow_serving_runs_and_smoke_keeps_the_path_short():
    from harness.plan import plan, smoke_suite
    from harness.runner.jobs import profiles_serving
    from harness.spec import LoadedSuite, Suite

    raw = {"name": "s", "models": [{"source": "builtin:tiny-llama"}], "methods": [{"name": "lora"}],
           "tasks": [{"name": "t", "kind": "summarization", "data": {"builtin": "dialogsum-mini"}}]}
    loaded = lambda **extra: LoadedSuite(Suite.model_validate({**raw, **extra}), None, "")  # noqa: E731
    confirmed = loaded(confirm={"seeds": 3})
    assert [profiles_serving(confirmed, "confirm", slot) for slot in range(3)] == [True, False, False]
    assert not profiles_serving(confirmed, "search", None)
    assert profiles_serving(loaded(), "search", None)  # nothing confirmed: every search run, the chosen one read
    assert profiles_serving(loaded(confirm={"seeds": 3}, serving={"runs": "every"}), "confirm", 2)
    assert not profiles_serving(loaded(serving={"enabled": False}), "search", None)
    smoke = smoke_suite(confirmed.suite)
    assert smoke.serving.rounds == 1 and smoke.serving.new_tokens == 4 and plan(smoke)


def test_a_v14_record_reads_with_no_serving_profile():
    from harness.records.schema import SCHEMA_VERSION, TrialRecord, upgrade
    from harness.records.synthetic import make_record

    data = make_record().model_dump(mode="json")
    data["schema_version"] = 14
    data.pop("serving")
    data["timing"].pop("serving_s")
    data.pop("distributed")
    data.pop("devices")
    record = TrialRecord.model_validate(upgrade(data))
    assert SCHEMA_VERSION >= 15 and record.serving is None and record.timing.serving_s == 0.0


@pytest.mark.e2e
def test_a_sweep_profiles_the_first_confirmation_and_the_page_shows_it(tmp_path, write_suite, capsys):
    """A real sweep (trials in their own processes): each method's first confirmation seed carries its
    serving profile and no other run does; the page has the Serving table and its chart; recommend --json
    carries each method's serving figures and engines."""
    import json

    from harness.cli import main
    from harness.records.store import open_store

    path = write_suite("""\
name: serves
models: [{source: 'builtin:tiny-llama', max_length: 64}]
tasks: [{name: dialog, kind: summarization, data: {builtin: dialogsum-mini, train_size: 32, test_size: 8}}]
methods: [{name: lora}, {name: qlora}, {name: prompt_tuning}, {name: adapter_pfeiffer}]
search: {trials_per_cell: 1, seed: 0, strategy: none}
training: {max_steps: 3, batch_size: 8, eval_batch_size: 8}
confirm: {seeds: 2}
retention: {enabled: false}
serving: {new_tokens: 6, max_share: 1.0}
""")
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results), "--reports", str(tmp_path / "reports")]) == 0
    records = open_store(results / "serves").load_all()
    profiled = [r for r in records if r.serving is not None]
    assert sorted(r.method for r in profiled) == ["adapter_pfeiffer", "lora", "prompt_tuning", "qlora"]
    assert all(r.phase == "confirm" and r.confirmation["slot"] == 0 for r in profiled)
    for r in profiled:
        s = r.serving
        assert s.error is None and s.mode == "generate" and s.prompt_tokens > 0, (r.method, s.error)
        assert r.timing.serving_s >= s.seconds > 0 and s.variant("base").overhead_pct == 0.0
    ships = {r.method: r.serving.ships for r in profiled}
    assert ships == {"lora": "merged", "qlora": "merged", "prompt_tuning": "adapter", "adapter_pfeiffer": "adapter"}
    lora = next(r for r in profiled if r.method == "lora").serving
    assert lora.merge_check["max_abs_diff"] < MERGE_TOLERANCE and lora.merge_check["predictions_changed"] == 0
    page = (tmp_path / "reports" / "serves" / "index.html").read_text(encoding="utf-8")
    assert "<h2>Serving</h2>" in page and "merged (ships)" in page and "vLLM: adapter" in page
    assert "rougeL vs serving latency" in page
    capsys.readouterr()
    assert main(["recommend", str(results / "serves"), "--json"]) == 0
    methods = {m["method"]: m for m in json.loads(capsys.readouterr().out)[0]["methods"]}
    assert methods["lora"]["serving"]["ships"] == "merged" and methods["lora"]["serving"]["ms"] >= 0
    assert methods["prompt_tuning"]["serving"]["engines"]["vllm"] == "no"
    assert main(["recommend", str(results / "serves"), "--serve-with", "vllm"]) == 0
    said = capsys.readouterr().out
    assert "prompt_tuning: " in said and "breaks serving: vLLM cannot serve it" in said


@pytest.mark.parametrize("name", ["prompt_tuning", "p_tuning", "prefix_tuning"])
@pytest.mark.parametrize("left_padded", [False, True])
def test_prompt_learning_generates_what_the_model_computes(name, left_padded):
    """Greedy generation of a prompt-learning model through the harness (harness/methods/base.py generate)
    equals greedy decoding by full recomputation through peft's own forward (what training used), also for
    a left-padded batch: peft 0.21's generate under transformers 5 takes every step for the first (soft
    prompts re-inserted, the prefix cache replaced), and its text differs."""
    from harness.methods.base import generate

    model, tok, *_ = _setup("tiny-llama", "causal_lm", name)
    short, long = tok(TEXT[:40])["input_ids"], tok(TEXT)["input_ids"]
    pad = tok.pad_token_id
    rows = [[pad] * (len(long) - len(short)) + short, long] if left_padded else [long]
    ids = torch.tensor(rows)
    mask = torch.tensor([[0 if (left_padded and i == 0 and j < len(long) - len(short)) else 1
                          for j in range(len(long))] for i in range(len(rows))])
    with torch.inference_mode():
        out = generate(model, input_ids=ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6,
                       do_sample=False, pad_token_id=pad)
        expected = []
        for row, m in zip(rows, mask.tolist()):  # each row alone, unpadded, recomputed from scratch each step
            cur = torch.tensor([[t for t, keep in zip(row, m) if keep]])
            for _ in range(6):
                logits = model(input_ids=cur, attention_mask=torch.ones_like(cur)).logits
                cur = torch.cat([cur, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            expected.append(cur[0, -6:].tolist())
    assert out[:, ids.shape[1]:].tolist() == expected
