"""Preference tuning (harness/tasks/preference.py) on the tiny decoder: each objective trains (loss
falls, preference accuracy on the training pairs rises above chance), DPO's reference under a peft
method is the base with the adapters switched off (no second model: counted), reward heads and
adapters save and reload with identical scores, our held-out scores agree with TRL's own, and
validate names what cannot run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from harness.methods import METHODS, ApplyContext
from harness.methods.artifacts import load_trained, save_trained
from harness.models import BUILTIN_MODELS
from harness.runner.prepare import load_model
from harness.runner.trainer import trainer_class
from harness.spec import ModelSpec, TaskSpec
from harness.tasks import family_of
from harness.tasks.builtin_data import BUILTIN_DATA
from harness.tasks.heads import HEADS

MAX_LENGTH = 96


def _splits(train: int = 48, test: int = 32):
    from datasets import Dataset, DatasetDict

    rows = [json.loads(line) for line in open(BUILTIN_DATA.get("preference-support").path, encoding="utf-8")]
    pick = lambda split, n: [{k: r[k] for k in ("prompt", "chosen", "rejected")}  # noqa: E731
                             for r in rows if r["split"] == split][:n]
    return DatasetDict(train=Dataset.from_list(pick("train", train)), validation=Dataset.from_list(pick("validation", 8)),
                       test=Dataset.from_list(pick("test", test)))


def _setup(objective: str, method_name: str, beta: float | None = None, train: int = 48):
    """What a trial has before training: the family, the model with the method applied, and the
    `prepared` fields make_trainer reads."""
    family = family_of("preference", None, objective)
    head = HEADS.get(family.decoder_head)
    spec = ModelSpec(source="builtin:tiny-llama", max_length=MAX_LENGTH)
    source = str(BUILTIN_MODELS.get("tiny-llama").locate())
    model, tokenizer = load_model(source, spec, head, [])
    method = METHODS.get(method_name)
    params, _ = method.split({})
    ctx = ApplyContext(task_type=head.peft_task_type, head_names=head.modules_of(model), model_type="llama",
                       max_steps=30, device="cpu")
    torch.manual_seed(0)
    model = method.build(model, params, ctx)
    task = TaskSpec(name="pairs", kind="preference", objective=objective, beta=beta,
                    data={"builtin": "preference-support"})
    prepared = SimpleNamespace(task=task, model_spec=spec, tokenizer=tokenizer, data=_splits(train))
    return family, model, prepared, (source, spec, head, method, params, ctx)


def _training_kwargs(tmp_path, steps: int = 30, lr: float = 3e-3) -> dict:
    return dict(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8,
                learning_rate=lr, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                seed=0, data_seed=0, disable_tqdm=True, include_num_input_tokens_seen="non_padding")


def _score(family, model, prepared, extra, split="test"):
    return family.evaluate(model, prepared.tokenizer, prepared.data[split], 16, "cpu", family.decoder_head,
                           **{"beta": prepared.task.beta or 0.1, "max_length": MAX_LENGTH, **extra})


def _storage_bytes(*models) -> int:
    """Bytes of the distinct tensor storages these models hold (a shared weight counts once)."""
    seen, total = set(), 0
    for model in models:
        if model is None:
            continue
        for t in (*model.parameters(), *model.buffers()):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()
    return total


@pytest.mark.parametrize("objective,method_name,lr", [("dpo", "lora", 3e-3), ("reward", "lora", 3e-3),
                                                      ("simpo", "lora", 3e-3), ("dpo", "full", 1e-3)])
def test_each_objective_trains_loss_falls_and_training_pairs_are_preferred(tmp_path, objective, method_name, lr):
    family, model, prepared, _ = _setup(objective, method_name)
    before = _score(family, model, prepared, {"reference": None}, split="train")
    trainer, extra, note = family.trainer(None, prepared, model, _training_kwargs(tmp_path, lr=lr), [], lean=trainer_class)
    after_untrained = _score(family, model, prepared, extra, split="train")
    trainer.train()
    after = _score(family, model, prepared, extra, split="train")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, f"{objective}: loss did not fall ({first:.4f} -> {last:.4f})"
    assert after["preference_accuracy"] >= 0.75, after  # 48 training pairs: chance is 0.5
    assert after["preference_accuracy"] > after_untrained["preference_accuracy"]
    if objective == "dpo":
        # before any step the policy is its reference: every implicit reward is 0, every pair a tie
        assert after_untrained["preference_accuracy"] == 0.5 and after_untrained["kl_to_reference"] < 1e-9
        assert after["kl_to_reference"] > 0 and after["margin"] > 0
        assert note["objective"] == "dpo" and note["beta"] == 0.1
    assert before["preference_accuracy"] == pytest.approx(after_untrained["preference_accuracy"]) or objective == "dpo"


def test_dpo_reference_under_peft_is_the_base_with_adapters_off_and_no_second_model(tmp_path):
    family, model, prepared, (source, spec, head, *_rest) = _setup("dpo", "lora")
    base_bytes = _storage_bytes(model)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    trainer, extra, note = family.trainer(None, prepared, model, _training_kwargs(tmp_path, steps=6), [], lean=trainer_class)
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == trainable  # what the method trains
    assert trainer.ref_model is None and extra["reference"] == "adapters"
    assert "ref" not in model.peft_config  # TRL's copied "ref" adapter removed: the reference is the base
    assert note["reference"] == "the base with adapters disabled (no copy)" and note["reference_bytes"] == 0
    # measured: the trainer holds one model's storages, plus LoRA's small matrices only
    held = _storage_bytes(trainer.model, trainer.ref_model)
    assert held == base_bytes
    trainer.train()
    # the reference TRL and our scores read is the untouched base: adapters off == a fresh load
    fresh, tokenizer = load_model(source, spec, head, [])
    ids = tokenizer(["Customer: Hi, my kettle arrived broken.\nAgent: Sorry, a replacement is on its way."],
                    return_tensors="pt")["input_ids"]
    model.eval()
    with torch.no_grad(), model.disable_adapter():
        off = model(input_ids=ids).logits
    with torch.no_grad():
        on = model(input_ids=ids).logits
        torch.testing.assert_close(off, fresh.eval()(input_ids=ids).logits, rtol=0, atol=1e-6)
    assert not torch.allclose(on, off)  # and the trained adapter does change the policy

    # full fine-tuning keeps a frozen copy: twice the weights, and the record says so
    family, full_model, prepared, _ = _setup("dpo", "full")
    weights = _storage_bytes(full_model)
    trainer, extra, note = family.trainer(None, prepared, full_model, _training_kwargs(tmp_path, steps=2), [], lean=trainer_class)
    assert trainer.ref_model is extra["reference"] and not any(p.requires_grad for p in trainer.ref_model.parameters())
    assert _storage_bytes(trainer.model, trainer.ref_model) == 2 * weights
    assert note["reference_bytes"] == weights and "frozen copy" in note["reference"]


@pytest.mark.parametrize("objective,method_name", [("reward", "lora"), ("reward", "full"), ("dpo", "lora")])
def test_reward_head_and_adapters_save_and_reload_with_identical_scores(tmp_path, objective, method_name):
    family, model, prepared, (source, spec, head, method, params, ctx) = _setup(objective, method_name)
    trainer, extra, _ = family.trainer(None, prepared, model, _training_kwargs(tmp_path, steps=8), [], lean=trainer_class)
    trainer.train()
    scores = _score(family, model, prepared, extra)
    save_trained(model, tmp_path / "artifact")
    base, _ = load_model(source, spec, head, [])
    reloaded = load_trained(base, tmp_path / "artifact", method, params, ctx)
    again = _score(family, reloaded, prepared, {"reference": "adapters" if extra["reference"] == "adapters" else None}
                   if objective == "dpo" else {})
    assert again["preference_accuracy"] == scores["preference_accuracy"]
    assert again["margin"] == pytest.approx(scores["margin"], rel=1e-5, abs=1e-6)


def test_held_out_dpo_scores_agree_with_trls_own(tmp_path):
    """Our evaluation tokenizes and scores pairs the way TRL's DPOTrainer does: on the same pairs its
    eval reward accuracy and margin equal ours."""
    family, model, prepared, _ = _setup("dpo", "lora")
    trainer, extra, _ = family.trainer(None, prepared, model, _training_kwargs(tmp_path, steps=12), [], lean=trainer_class)
    trainer.train()
    ours = _score(family, model, prepared, extra)
    theirs = trainer.evaluate(prepared.data["test"])
    assert ours["preference_accuracy"] == pytest.approx(theirs["eval_rewards/accuracies"], abs=1 / 32 + 1e-6)
    assert ours["margin"] == pytest.approx(theirs["eval_rewards/margins"], rel=1e-3, abs=1e-5)


def test_longer_answer_baseline_is_at_chance_on_the_built_in_pairs():
    family = family_of("preference")
    for split in ("train", "validation", "test"):
        assert family.trivial(_splits(240, 80), split)["preference_accuracy"] == 0.5


def test_pairs_without_prompt_and_conversational_pairs_become_one_text_form():
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    family = family_of("preference")
    tokenizer = AutoTokenizer.from_pretrained(str(BUILTIN_MODELS.get("tiny-llama").locate()))
    tokenizer.chat_template = ("{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
                               "{% if add_generation_prompt %}<s> assistant : {% endif %}")
    hh = Dataset.from_list([{"chosen": "Human: my kettle broke\n\nAssistant: a replacement is on its way",
                             "rejected": "Human: my kettle broke\n\nAssistant: read the manual", "prompt": ""}])
    out = family.tokenize(DatasetDict(train=hh, test=hh), tokenizer, 64, [])
    row = out["train"][0]
    assert row["prompt"] == "Human: my kettle broke\n\nAssistant:" and row["rejected"] == " read the manual"
    chat = Dataset.from_list([{"prompt": [{"role": "user", "content": "my kettle broke"}],
                               "chosen": [{"role": "assistant", "content": "a replacement"}],
                               "rejected": [{"role": "assistant", "content": "no"}]}])
    row = family.tokenize(DatasetDict(train=chat, test=chat), tokenizer, 64, [])["train"][0]
    assert row["prompt"].endswith("<s> assistant : ") and "a replacement" in row["chosen"]
    assert all(isinstance(row[k], str) for k in ("prompt", "chosen", "rejected"))
    # the trivial row reads the raw pairs: a conversational answer's length is its messages' text
    assert family.trivial(DatasetDict(train=chat, test=chat), "test")["preference_accuracy"] == 1.0


SUITE = """\
name: pref
models:
  - source: builtin:tiny-llama
    max_length: 96
tasks:
  - name: pairs
    kind: preference
    objective: {objective}
    data: {{builtin: preference-support, train_size: 32, validation_size: 8, test_size: 16}}
methods:
{methods}
search: {{trials_per_cell: 1, seed: 0, strategy: none}}
training: {{max_steps: 2, batch_size: 8, eval_batch_size: 16}}
references: false
"""


def test_validate_names_what_cannot_run(write_suite, capsys):
    from harness.cli import main

    def validate(text):
        code = main(["validate", str(write_suite(text))])
        return code, capsys.readouterr()

    base = SUITE.format(objective="simpo", methods="  - name: prompt_tuning\n  - name: lora")
    code, out = validate(base)
    assert code == 2 and "method prompt_tuning cannot run task pairs" in out.err + out.out
    assert "virtual tokens" in out.err + out.out and "methods[0].name" in out.err + out.out
    code, out = validate(SUITE.format(objective="dpo", methods="  - name: lora") + "acceleration: {packing: true}\n")
    assert code == 2 and "TRL's own trainer" in out.err + out.out
    code, out = validate(SUITE.format(objective="kto", methods="  - name: lora"))
    assert code == 2 and "objective" in out.err + out.out
    code, out = validate(SUITE.format(objective="dpo", methods="  - name: lora").replace("tiny-llama", "tiny-bert"))
    assert code == 2 and "needs a decoder LM" in out.err + out.out
    sentiment = SUITE.format(objective="dpo", methods="  - name: lora").replace(
        "kind: preference", "kind: classification").replace("preference-support", "sentiment")
    code, out = validate(sentiment)
    assert code == 2 and "has no objective" in out.err + out.out and "tasks[0].objective" in out.err + out.out


@pytest.mark.e2e
def test_a_preference_sweep_records_each_objective_with_its_reference(tmp_path, write_suite):
    from harness.api import run

    # local files with a column mapping, beside the built-in pairs
    rows = [json.loads(line) for line in open(BUILTIN_DATA.get("preference-support").path, encoding="utf-8")]
    for split in ("train", "test"):
        with open(tmp_path / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for r in [r for r in rows if r["split"] == split][:24]:
                f.write(json.dumps({"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]}) + "\n")
    tasks = "".join(f"""  - name: {o}
    kind: preference
    objective: {o}
    data: {{builtin: preference-support, train_size: 32, validation_size: 8, test_size: 16}}
""" for o in ("dpo", "reward", "orpo")) + """  - name: files
    kind: preference
    objective: dpo
    data: {files: {train: train.jsonl, test: test.jsonl}, columns: {prompt: question, chosen: good, rejected: bad}}
"""
    text = SUITE.format(objective="dpo", methods="  - name: lora\n  - name: full\n  - name: none\n  - name: trivial")
    text = text.split("tasks:")[0] + "tasks:\n" + tasks + "methods:" + text.split("methods:")[1]
    results = run(write_suite(text), results=str(tmp_path / "results"), reports=str(tmp_path / "reports"))
    records = {r.cell_id: r for r in results.records()}
    assert all(r.status == "complete" for r in records.values()), {k: r.reason for k, r in records.items()}
    lora, full = records["dpo--tiny-llama--lora"], records["dpo--tiny-llama--full"]
    assert lora.preference["reference"].startswith("the base with adapters disabled")
    assert full.preference["reference_bytes"] > 0
    assert set(lora.metrics) == {"preference_accuracy", "margin", "kl_to_reference"}
    assert set(records["reward--tiny-llama--lora"].metrics) == {"preference_accuracy", "margin"}
    assert records["orpo--tiny-llama--lora"].preference == {"objective": "orpo", "beta": 0.1}
    assert set(records["dpo--tiny-llama--trivial"].metrics) == {"preference_accuracy"}  # the longer answer: no margin
    assert records["dpo--tiny-llama--none"].metrics["preference_accuracy"] == 0.5  # its own reference: all ties
    assert lora.throughput.train_tokens > 0 and lora.memory.train_bytes > 0
    assert records["files--tiny-llama--lora"].validation_source["origin"] == "carved from train"
    assert records["files--tiny-llama--lora"].metrics["preference_accuracy"] >= 0
    page = results.page.read_text(encoding="utf-8")
    assert "preference_accuracy" in page and "kl_to_reference" in page


@pytest.mark.e2e
@pytest.mark.parametrize("objective,left_out", [("dpo", {"bitfit"}), ("reward", {"bitfit", "prefix_tuning"})])
def test_every_method_that_applies_runs_under_dpo_and_reward(tmp_path, write_suite, capsys, objective, left_out):
    """The same budget and rules as every task, for every registered method; validate names the reason
    for those that cannot apply to this model and head."""
    from harness.api import run
    from harness.cli import main

    names = sorted(METHODS.names())
    text = SUITE.format(objective=objective, methods="\n".join(f"  - name: {m}" for m in names))
    assert main(["validate", str(write_suite(text, "all.yaml"))]) == 2
    captured = capsys.readouterr()
    err = captured.err + captured.out
    assert "bitfit cannot be used with model tiny-llama: llama models have no bias terms" in err
    assert ("prefix_tuning cannot be used" in err) == ("prefix_tuning" in left_out)
    kept = [m for m in names if m not in left_out]
    text = SUITE.format(objective=objective, methods="\n".join(f"  - name: {m}" for m in kept))
    results = run(write_suite(text, "kept.yaml"), results=str(tmp_path / "results"), reports=str(tmp_path / "reports"))
    records = results.records()
    assert len(records) == len(kept)
    assert {r.status for r in records} == {"complete"}, {r.method: r.reason for r in records if r.status != "complete"}
