"""The harness's Trainer subclass skips per-step module walks; it must train exactly as the HF
Trainer does, through evaluation mode switches, and leave the model as it found it."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from harness.runner.bench import bench_suite
from harness.runner.jobs import make_job
from harness.plan import plan
from harness.runner.prepare import Preparer
from harness.runner.trainer import trainer_class, training_args
from harness.runner.trial import apply_context
from harness.spec import LoadedSuite


def _train(trainer_cls, job, prepared, out_dir: Path):
    from transformers import set_seed

    set_seed(0)
    model = job.cell.method.build(copy.deepcopy(prepared.model), job.method_params, apply_context(job, prepared))
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    modes: list[bool] = []

    from transformers import TrainerCallback

    class Modes(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            modes.append(all(m.training for m in model.modules()))

    class Evaluate(TrainerCallback):  # what the trials' validation does: eval mode, a pass, back to training
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % 3 == 0:
                model.eval()
                with torch.no_grad():
                    model(**{k: v[:4] for k, v in batch.items()})

    batch = prepared.head.collator(prepared.tokenizer)([prepared.data["validation"][i] for i in range(4)])
    trainer = trainer_cls(model=model, args=training_args(job, str(out_dir)), train_dataset=prepared.data["train"],
                          data_collator=prepared.head.collator(prepared.tokenizer), callbacks=[Modes(), Evaluate()])
    trainer.train()
    return model, trainer, modes, initial


def test_lean_trainer_trains_exactly_like_the_hf_trainer(tmp_path):
    from transformers import Trainer

    suite = bench_suite("builtin:tiny-bert", "lora", steps=8, batch_size=8, max_length=32, data="sentiment")
    suite = suite.model_copy(update={"runner": suite.runner.model_copy(update={"isolation": "inline"})})
    [cell] = plan(suite)
    prepared = Preparer(tmp_path, seed=0).get(cell.model, cell.task)
    job = make_job(LoadedSuite(suite, tmp_path / "s.yaml", ""), cell, trial_number=0, seed=0, device="cpu",
                   suite_hash="t", params=dict(cell.fixed, learning_rate=5e-3))

    ours, our_trainer, our_modes, initial = _train(trainer_class(), job, prepared, tmp_path / "ours")
    theirs, _, their_modes, _ = _train(Trainer, job, prepared, tmp_path / "theirs")

    assert our_trainer.state.global_step == 8
    # every step after an evaluation ran with dropout on again, as with the HF Trainer
    assert our_modes == their_modes == [True] * 8
    trained = {n: p for n, p in ours.named_parameters() if p.requires_grad}
    reference = dict(theirs.named_parameters())
    assert trained and all(torch.equal(p, reference[n]) for n, p in trained.items())
    moved = [n for n, p in trained.items() if not torch.equal(p, initial[n])]
    assert len(moved) == len(trained), "some trainable weights did not move, so the comparison proves less"
    # the shortcuts were instance attributes for the run only
    assert "train" not in ours.__dict__ and "zero_grad" not in ours.__dict__
    assert all(p.grad is None for p in ours.parameters())


def _one_step_with_accumulation(tmp_path, micro: int, trainer_cls):
    """A dropout-free BERT classifier, one optimizer step of batch 8 as micro-batches of `micro`: the
    parameters after it."""
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments, set_seed

    set_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=64,
                                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    g = torch.Generator().manual_seed(1)
    rows = [{"input_ids": torch.randint(0, 64, (6,), generator=g).tolist(), "labels": i % 2} for i in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path / f"m{micro}"), per_device_train_batch_size=micro,
                             gradient_accumulation_steps=8 // micro, max_steps=1, learning_rate=0.1, optim="sgd",
                             max_grad_norm=0.0, lr_scheduler_type="constant", use_cpu=True, report_to="none",
                             disable_tqdm=True, save_strategy="no", dataloader_num_workers=0, seed=0, data_seed=0)
    trainer = trainer_cls(model=model, args=args, train_dataset=rows)
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(rows)
    trainer.train()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_a_classifier_s_step_does_not_depend_on_how_the_batch_is_split(tmp_path):
    """micro_batch_size (and the OOM backoff that lowers it) must not change what a step does: a BERT
    classifier's forward takes **kwargs, which the HF Trainer reads as a loss divided by
    num_items_in_batch, so its gradients came out summed over the accumulation steps (x2 here)."""
    whole = _one_step_with_accumulation(tmp_path, 8, trainer_class())
    halves = _one_step_with_accumulation(tmp_path, 4, trainer_class())
    for name, value in whole.items():
        assert torch.allclose(halves[name], value, atol=1e-6), name
