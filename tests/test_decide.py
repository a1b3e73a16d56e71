"""Verdicts against the best (report/decide.py): equivalent only where the 90% paired interval lies
inside the tolerance (two one-sided tests), worse or better where it clears zero, undecided otherwise,
with the seeds that would likely decide it; and, by simulation on paired scores with a known truth,
false decisions at or under the stated 5% per side."""

from __future__ import annotations

import random

import pytest

from harness.report.decide import MAX_SEEDS, seeds_to_decide, verdict


def test_each_verdict_and_its_interval():
    assert verdict([0.001, -0.002, 0.0015, -0.001], 0.01).word == "equivalent"
    assert verdict([-0.08, -0.07, -0.075], 0.01).word == "worse"
    assert verdict([0.05, 0.06, 0.055], 0.01).word == "better"
    wide = verdict([-0.3, 0.1, -0.2], 0.01)  # a wide interval holding zero: not known, never a tie
    assert wide.word == "undecided" and wide.low < 0 < wide.high and wide.more_seeds > 0
    assert verdict([0.01], 0.01) is None  # one seed: no interval, no verdict
    # a loss (minimized): higher is worse
    assert verdict([0.08, 0.07, 0.075], 0.01, maximize=False).word == "worse"
    # statistically below the best but inside the tolerance: equivalent for the team's purpose
    assert verdict([-0.004, -0.005, -0.0045, -0.0042], 0.01).word == "equivalent"


def test_the_seeds_to_decide_would_decide_it_were_the_observed_spread_the_truth():
    diffs = [-0.03, 0.01, -0.02, 0.0]
    found = verdict(diffs, 0.01)
    assert found.word == "undecided"
    more = found.more_seeds
    mean, sd = found.mean, (sum((d - found.mean) ** 2 for d in diffs) / 3) ** 0.5
    # the same mean and spread over n + more seeds decide; over one seed fewer they would not yet
    spread = [mean + sd * z for z in (1, -1)] * ((4 + more) // 2) + [mean] * ((4 + more) % 2)
    assert verdict(spread, 0.01).word != "undecided"
    assert seeds_to_decide(0.0, 0.0, 3, 0.01) == 0
    assert seeds_to_decide(0.01, 10.0, 3, 0.01) == MAX_SEEDS  # no budget a sweep spends would do


@pytest.mark.parametrize("truth, forbidden", [(0.0, ("worse",)), (0.0, ("better",)),  # truly equal: each side
                                              (-0.01, ("equivalent",)),  # exactly at the tolerance
                                              (-0.03, ("equivalent", "better"))])  # truly worse
def test_false_decisions_stay_at_or_under_five_percent(truth, forbidden):
    rng = random.Random(0)
    runs, seeds, sd, tolerance = 2000, 5, 0.01, 0.01
    wrong = sum(verdict([rng.gauss(truth, sd) for _ in range(seeds)], tolerance).word in forbidden
                for _ in range(runs))
    # 5% per one-sided test; the binomial noise of 2,000 runs is about 0.5 points
    assert wrong / runs <= 0.05 + 0.015, f"{wrong / runs:.3f} wrong at truth {truth}"


def _board(methods: dict, refs: dict | None = None, tolerance: float = 0.01):
    """A leaderboard from synthetic records: {method: (accuracies per seed, train MiB)}."""
    from harness.records.synthetic import make_record
    from harness.report.leaderboard import leaderboard

    records = []
    for method, (accs, mib) in methods.items():
        records.append(make_record(method=method, accuracy=max(accs), peak_mib=mib))
        if len(accs) > 1:
            records += [make_record(method=method, seed=s + 1, accuracy=a, peak_mib=mib, phase="confirm")
                        for s, a in enumerate(accs)]
    for method, acc in (refs if refs is not None else {"none": 0.5, "trivial": 0.5}).items():
        records.append(make_record(method=method, accuracy=acc, family="baseline", trainable=0))
    return leaderboard(records, tolerance)


def test_the_answer_is_the_cheapest_of_the_best_and_its_equivalents():
    from harness.report.decide import answer

    board = _board({"full": ([0.90, 0.92, 0.91], 900.0), "lora": ([0.899, 0.921, 0.905], 300.0),
                    "bitfit": ([0.70, 0.71, 0.72], 200.0)}, tolerance=0.02)
    said = answer(board)
    assert said.startswith("Use lora: equivalent to full within ±0.02 accuracy, at 33% of its train memory"), said
    assert "bitfit" not in said  # worse: cheaper, but not a candidate


def test_an_undecided_method_that_could_change_the_answer_is_named_with_its_seeds():
    from harness.report.decide import answer

    board = _board({"full": ([0.90, 0.92, 0.91], 900.0), "ln_tuning": ([0.70, 0.95, 0.80], 100.0)})
    said = answer(board)
    assert said.startswith("Use full: the best by test accuracy (0.910 over 3 seeds)")
    assert "Undecided against it, and first by train memory: ln_tuning" in said and "more seed" in said


def test_no_method_that_beats_the_baselines_is_no_recommendation():
    from harness.report.decide import answer

    board = _board({"lora": ([0.55, 0.50, 0.53], 300.0), "full": ([0.52, 0.54, 0.51], 900.0)},
                   refs={"none": 0.55, "trivial": 0.552})
    said = answer(board)
    assert said.startswith("No method learned this task at this budget") and "Use" not in said
    assert "trivial 0.552" in said


def test_single_runs_are_not_a_verdict():
    from harness.report.decide import answer

    said = answer(_board({"full": ([0.91], 900.0), "lora": ([0.90], 300.0)}))
    assert said.startswith("Best by test accuracy: full (0.910), from single runs")


def test_a_best_whose_interval_reaches_the_baselines_is_not_the_answer():
    from harness.report.decide import answer

    board = _board({"full": ([0.95, 0.55, 0.98], 900.0), "lora": ([0.80, 0.81, 0.80], 300.0)},
                   refs={"none": 0.6, "trivial": 0.5})
    said = answer(board)
    assert said.startswith("Use lora: the best of the methods that beat the baselines"), said


def test_recommend_gives_the_answer_for_an_existing_results_set_with_other_settings(tmp_path, capsys):
    import json

    from harness.api import load
    from harness.cli import main
    from harness.records.store import FileRecordStore
    from harness.records.synthetic import make_record

    store = FileRecordStore(tmp_path / "set")
    for method, accs, mib, seconds in (("full", [0.90, 0.92, 0.91], 900.0, 5.0),
                                       ("lora", [0.895, 0.915, 0.912], 300.0, 9.0)):
        store.write(make_record(method=method, accuracy=max(accs), peak_mib=mib, train_s=seconds))
        for s, a in enumerate(accs):
            store.write(make_record(method=method, seed=s + 1, accuracy=a, peak_mib=mib, train_s=seconds,
                                    phase="confirm"))
    store.save_suite("name: synthetic\ndecision: {tolerance: 0.03}\n")
    assert main(["recommend", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "Use lora: equivalent to full within ±0.03 accuracy, at 33% of its train memory" in out
    assert "tolerance ±0.03; prefer train_memory, train_time" in out
    # other settings than the suite's: time first picks full; a tight tolerance leaves lora undecided
    assert main(["recommend", str(store.root), "--prefer", "train_time", "--json"]) == 0
    decided = json.loads(capsys.readouterr().out)
    assert decided[0]["answer"].startswith("Use full") and decided[0]["prefer"] == ["train_time"]
    assert {m["method"]: m["verdict"] for m in decided[0]["methods"]} == {"full": "best", "lora": "equivalent"}
    tight = load(store.root).decision(tolerance=0.001)
    assert {m["method"]: m["verdict"] for m in tight[0]["methods"]}["lora"] == "undecided"
    assert main(["recommend", str(store.root), "--prefer", "cost"]) == 2
    assert "--prefer from train_memory, train_time" in capsys.readouterr().err
    # a memory limit full breaks (900 MiB measured): lora, named with the limit full breaks
    assert main(["recommend", str(store.root), "--memory", "0.5GiB", "--prefer", "train_time"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps at 100 columns
    assert "Use lora" in out and "full (memory: 0.9 GiB measured, over decision.limits.memory 0.5GiB)" in out
    assert "limits: memory 0.5GiB" in out
    assert main(["recommend", str(store.root), "--gpu", "nope"]) == 2
    assert "unknown GPU kind 'nope'" in capsys.readouterr().err


def test_a_method_that_breaks_a_limit_is_ruled_out_with_the_limit():
    from harness.report.decide import Terms, answer
    from harness.spec import DecisionSpec

    board = _board({"full": ([0.90, 0.92, 0.91], 900.0), "lora": ([0.899, 0.921, 0.905], 300.0),
                    "bitfit": ([0.70, 0.71, 0.72], 200.0)}, tolerance=0.02)
    terms = Terms(DecisionSpec(tolerance=0.02, limits={"memory": "1GiB", "train_hours": 0.001}))
    said = answer(board, terms)
    # every method took 10 s (synthetic): 0.0028 h, over 0.001 h, so all break it
    assert said.startswith("No method keeps within decision.limits") and "time: 0.00 h per run measured" in said
    terms = Terms(DecisionSpec(tolerance=0.02, limits={"memory": "500MiB"}))  # full's 900 MiB breaks it
    said = answer(board, terms)
    assert said.startswith("Use lora: equivalent to full") and "Ruled out by decision.limits: full (memory: 0.9 GiB" in said
    terms = Terms(DecisionSpec(tolerance=0.02, limits={"memory": "250MiB"}))  # only bitfit fits: worse than the best
    said = answer(board, terms)
    assert said.startswith("Use bitfit: the best within decision.limits, worse against the best (full, -0.2"), said
    # a cost limit reads the price per GPU-hour: 10 s at $3600/h is $10
    said = answer(board, Terms(DecisionSpec(tolerance=0.02, limits={"cost": 5.0}), price=3600.0))
    assert said.startswith("No method keeps within decision.limits") and "cost: $10.00 per run measured, over $5" in said


def test_a_tie_is_broken_by_prefer():
    from harness.report.decide import Terms, answer
    from harness.spec import DecisionSpec

    board = _board({"full": ([0.90, 0.92, 0.91], 900.0), "lora": ([0.899, 0.921, 0.905], 300.0)}, tolerance=0.02)
    assert answer(board, Terms(DecisionSpec(tolerance=0.02))).startswith("Use lora")  # less memory
    # equal train time (synthetic: 10 s each): the rank decides between them
    assert answer(board, Terms(DecisionSpec(tolerance=0.02, prefer=["train_time"]))).startswith("Use full")


LLAMA_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
            "torch_dtype": "bfloat16", "hidden_act": "silu", "tie_word_embeddings": False}


@pytest.mark.e2e  # not a process, but 30 s of fake-tensor simulation of an 8B model
def test_a_target_llama_8b_on_a_24_gib_gpu_rules_out_what_does_not_fit(tmp_path):
    """Measured on a small model, decided for a Llama-3.1-8B-shaped config on an RTX 4090 (24 GiB):
    full fine-tuning does not fit there, and the answer is among the methods that do."""
    import json

    from harness.records.synthetic import make_record
    from harness.report.decide import answer
    from harness.report.leaderboard import leaderboard
    from harness.report.publish import answer_terms

    (tmp_path / "llama-8b").mkdir()
    (tmp_path / "llama-8b" / "config.json").write_text(json.dumps(LLAMA_8B))
    suite_text = """\
name: synthetic
models: [{source: 'builtin:tiny-llama', max_length: 64}]
tasks: [{name: sentiment, kind: classification, data: {builtin: sentiment}}]
methods: [{name: full}, {name: lora}, {name: qlora}]
training: {max_steps: 100, batch_size: 16, micro_batch_size: 4}
decision: {tolerance: 0.02, target: {model: ./llama-8b, seq_len: 256, gpu: rtx4090}}
"""
    records = []
    for method, accs, mib in (("full", [0.90, 0.92, 0.91], 900.0), ("lora", [0.899, 0.921, 0.905], 300.0),
                              ("qlora", [0.898, 0.92, 0.906], 250.0)):
        records.append(make_record(method=method, accuracy=max(accs), peak_mib=mib))
        records += [make_record(method=method, seed=s + 1, accuracy=a, peak_mib=mib, phase="confirm")
                    for s, a in enumerate(accs)]
    terms = answer_terms(suite_text, records, tmp_path / "report", tmp_path)
    at = {t["method"]: t for t in terms.target}
    assert set(at) == {"full", "lora", "qlora"} and at["full"]["gpu"] == "RTX 4090"
    assert at["full"]["max_micro_batch"] == 0  # bf16 weights, grads, 2 Adam states: 8B x 8 bytes > 24 GiB
    assert at["qlora"]["max_micro_batch"] >= 1 and at["qlora"]["predicted_bytes"] < at["lora"]["predicted_bytes"]
    assert not at["qlora"]["calibrated"]  # the records were not measured on a GPU
    said = answer(leaderboard(records, 0.02), terms)
    assert "Ruled out by decision.limits: full (memory: needs" in said and "and no micro-batch fits" in said
    chosen = said.split(":")[0].removeprefix("Use ")
    assert chosen in ("lora", "qlora") and (at[chosen]["max_micro_batch"] or 0) >= 1
    assert "At the target (llama-8b, RTX 4090, 256 tokens; predicted, quality measured on tiny)" in said
    assert (tmp_path / "report" / "target-estimate.json").exists()  # cached: the page and a re-run read it


def test_a_gpu_limit_is_its_memory_less_the_cuda_context():
    from harness.report.decide import Terms, breaks
    from harness.spec import DecisionSpec

    terms = Terms(DecisionSpec(limits={"gpu": "l4"}))  # 22.5 GiB as the driver reports it, 0.5 GiB of it the context
    assert breaks({"task": "t", "method": "m", "peak_mib": 22_000.0, "train_s": 10.0}, terms) == []
    assert breaks({"task": "t", "method": "m", "peak_mib": 23_000.0, "train_s": 10.0}, terms) == [
        "memory: 22.5 GiB measured, over L4 memory (22.0 GiB after its CUDA context)"]


def _forgetting_records(forgets: dict[str, float]):
    from harness.records.synthetic import make_record

    records = []
    for method, accs in (("full", [0.90, 0.92, 0.91]), ("lora", [0.901, 0.919, 0.911]), ("ia3", [0.899, 0.921, 0.91])):
        records.append(make_record(method=method, accuracy=max(accs), peak_mib=300.0, forgetting=forgets[method]))
        records += [make_record(method=method, seed=s + 1, accuracy=a, peak_mib=300.0, phase="confirm",
                                forgetting=forgets[method] + 0.002 * s) for s, a in enumerate(accs)]
    return records


def test_the_answer_can_prefer_less_forgetting_and_cap_it():
    from harness.report.decide import Terms, answer, decision
    from harness.report.leaderboard import leaderboard
    from harness.spec import DecisionSpec

    records = _forgetting_records({"full": 0.20, "lora": 0.05, "ia3": 0.01})
    board = leaderboard(records, 0.02)
    # read by no choice unless asked: the default answer goes by memory and time, and says what it forgets
    plain = answer(board, Terms(DecisionSpec(tolerance=0.02)))
    assert "It forgets" in plain and "nats/token on general text [" in plain
    prefer = answer(board, Terms(DecisionSpec(tolerance=0.02, prefer=["forgetting"])))
    assert prefer.startswith("Use ia3: equivalent to") and "It forgets +0.012 nats/token" in prefer
    capped = Terms(DecisionSpec(tolerance=0.02, limits={"max_forgetting": 0.1}))
    said = answer(board, capped)
    assert "Ruled out by decision.limits: full (forgetting: +0.202 nats/token on general text, over 0.1)" in said
    rows = {r["method"]: r for r in decision(records, capped)[0]["methods"]}
    assert rows["lora"]["forgetting"] == pytest.approx(0.052) and rows["lora"]["forgetting_interval"][0] < 0.052
    assert rows["full"]["breaks"] and not rows["lora"]["breaks"]
