"""Preference tuning (RLHF's offline stage) on (prompt, chosen, rejected) pairs, through TRL's own
trainers: a reward model (RewardTrainer), or the policy itself with DPO (DPOTrainer), SimPO (TRL's
CPO trainer, loss simpo) or ORPO (ORPOTrainer). One family per objective (the task's `objective:`);
all are scored on held-out pairs by preference accuracy and mean margin, DPO also by its KL to the
reference."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from harness.metrics.divergence import mean_and_se, next_token_kl
from harness.measure.memory import model_bytes
from harness.methods.base import is_peft
from harness.tasks import register
from harness.tasks.base import TaskFamily

FIELDS = ("prompt", "chosen", "rejected")
# TRL's defaults, where the task gives no beta: DPO 0.1, CPO (SimPO) 0.1 and ORPO 0.1
DEFAULT_BETA = 0.1


@dataclass(frozen=True)
class Objective:
    name: str
    summary: str
    head: str  # the model head it trains (harness/tasks/heads.py)
    config: Callable[[], Any]  # the TRL config class
    trainer: Callable[[], Any]  # the TRL trainer class
    extra: Callable[[float], dict]  # the config's objective-specific keywords, from beta
    # the policy is held to a frozen reference (DPO). A held-out answer's score (_sequence_scores): the
    # reward head's output (reward), beta x log-ratio to the reference (dpo), beta x mean log-prob per
    # token (simpo), the log-odds of the mean per-token probability (orpo)
    uses_reference: bool = False


def _trl(path: str, name: str) -> Callable[[], Any]:
    def load():
        import importlib

        return getattr(importlib.import_module(path), name)

    return load


OBJECTIVES = {o.name: o for o in (
    Objective("reward", "a reward model: one score per answer, pairwise loss (TRL RewardTrainer)", "reward",
              _trl("trl", "RewardConfig"), _trl("trl", "RewardTrainer"), lambda beta: {}),
    Objective("dpo", "DPO on the policy against a frozen reference (TRL DPOTrainer)", "causal_lm",
              _trl("trl", "DPOConfig"), _trl("trl", "DPOTrainer"), lambda beta: {"beta": beta},
              uses_reference=True),
    Objective("simpo", "SimPO: length-normalised log-prob margin, no reference (TRL CPOTrainer, loss simpo)",
              "causal_lm", _trl("trl.experimental.cpo", "CPOConfig"), _trl("trl.experimental.cpo", "CPOTrainer"),
              lambda beta: {"beta": beta, "loss_type": "simpo", "cpo_alpha": 0.0}),
    Objective("orpo", "ORPO: language-model loss plus an odds-ratio term, no reference (TRL ORPOTrainer)",
              "causal_lm", _trl("trl.experimental.orpo", "ORPOConfig"), _trl("trl.experimental.orpo", "ORPOTrainer"),
              lambda beta: {"beta": beta}),
)}


# ---------------------------------------------------------------- training


def make_trainer(objective: Objective, job, prepared, model, training_kwargs: dict, callbacks: list,
                 lean: Callable[[type], type] = lambda trainer: trainer):
    """TRL's trainer for this objective over the trial's model (the method already applied), with the
    runner's callbacks and its lean Trainer shortcuts (`lean`: the runner's trainer_class, given by the
    caller, since tasks sit below the runner). Returns (trainer, evaluate's extras, what the record
    says about the reference)."""
    import copy

    beta = prepared.task.beta or DEFAULT_BETA
    dtype = prepared.model_spec.dtype
    args = objective.config()(**training_kwargs, max_length=prepared.model_spec.max_length,
                              # TRL's configs default to bf16 autocast; the harness computes in the model's
                              # dtype for every task (bf16 on a CPU is ~25x slower than float32)
                              bf16=dtype == "bfloat16", fp16=dtype == "float16",
                              **objective.extra(beta))
    kwargs = dict(model=model, args=args, train_dataset=prepared.data["train"],
                  processing_class=prepared.tokenizer, callbacks=callbacks)
    reference, note = None, {"objective": objective.name, "beta": beta if objective.name != "reward" else None}
    adapters = is_peft(model)
    if objective.uses_reference and not adapters:
        # Not a peft model (full fine-tuning, BitFit, our bottleneck adapters): the reference is a frozen
        # copy of the model as the trial starts. TRL would reload one from the model's name or path, which
        # a model converted from GGUF or built in memory does not have.
        reference = copy.deepcopy(model).requires_grad_(False).eval()
        kwargs["ref_model"] = reference
    dtypes = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}
    with _reference_adapter_frozen(model):
        trainer = lean(objective.trainer())(**kwargs)
    # TRL casts the trainable parameters of a quantized model to bf16 (QLoRA's paper setting); the
    # method decides their dtype for every task here (float32 adapters on a CPU, where bf16 is ~25x
    # slower; a reward head in bf16 would not even take the float32 hidden states)
    for name, p in trainer.model.named_parameters():
        if name in dtypes and p.dtype != dtypes[name]:
            p.data = p.data.to(dtypes[name])
    if objective.uses_reference and adapters:
        # TRL adds a "ref" adapter copied from the fresh one and scores the reference with it. That is the
        # base only for adapters initialised to the identity (LoRA's zero B), not for soft prompts; with it
        # removed, TRL and our evaluation score the reference with every adapter disabled: the base itself,
        # with no second copy of the model.
        if "ref" in trainer.model.peft_config:
            trainer.model.delete_adapter("ref")
            trainer.model.set_adapter("default")
        reference = "adapters"
    if objective.uses_reference:
        note["reference"] = ("the base with adapters disabled (no copy)" if reference == "adapters" else
                             "a frozen copy of the model at the start of training")
        note["reference_bytes"] = 0 if reference == "adapters" else model_bytes(reference)
    return trainer, {"reference": reference}, note


@contextmanager
def _reference_adapter_frozen(model):
    """While TRL's DPOTrainer is built on an AdaLoRA model: the "ref" adapter it adds is created frozen
    (AdaLoRA allows one trainable adapter only); the adapters' trainable flags are as before after.
    Only there: a frozen P-tuning adapter is built without its MLP, which TRL's copy then misses."""
    from peft import AdaLoraConfig

    if not is_peft(model) or not any(isinstance(c, AdaLoraConfig) for c in model.peft_config.values()):
        yield
        return
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    modes = {name: config.inference_mode for name, config in model.peft_config.items()}
    for config in model.peft_config.values():
        config.inference_mode = True
    try:
        yield
    finally:
        for name, mode in modes.items():
            model.peft_config[name].inference_mode = mode
        for name, p in model.named_parameters():
            if name in trainable:
                p.requires_grad_(trainable[name])


# ---------------------------------------------------------------- evaluation


def _pair_ids(tokenizer, prompt: str, answer: str, max_length: int, eos: bool) -> tuple[list[int], int]:
    """prompt + answer as TRL tokenizes it for training (the answer ends with eos; the completion starts
    where the prompt's and the whole's tokens diverge), cut to max_length with its start kept (DPO's
    keep_start; TRL's reward trainer drops longer training pairs instead). Returns (ids, where the
    completion starts)."""
    if eos and tokenizer.eos_token and not answer.endswith(tokenizer.eos_token):
        answer += tokenizer.eos_token
    from trl.data_utils import common_prefix_length

    ids = tokenizer(prompt + answer)["input_ids"]
    start = common_prefix_length(tokenizer(prompt)["input_ids"], ids)
    return ids[:max_length], min(start, max_length)


def _padded(rows: list[tuple[list[int], int]], pad_id: int, device: str):
    """Right-padded input ids, attention mask and completion mask of a batch."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, start) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
        completion[i, start:len(ids)] = 1
    return input_ids.to(device), attention.to(device), completion.to(device)


def _logits(model, input_ids, attention):
    """Next-token logits at every position that predicts a real token (a soft prompt's virtual
    positions dropped, as TRL does)."""
    logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
    return logits[:, -input_ids.size(1):-1]


def _answer_logprobs(logits, positions):
    """Log-softmax over the vocabulary at the answers' positions only (the prompt's are not scored)."""
    import torch

    return torch.log_softmax(logits[positions].float(), dim=-1)


def _sequence_scores(objective: str, model, tokenizer, pairs: list[dict], batch_size: int, device: str,
                     max_length: int, beta: float, reference) -> tuple[list[float], list[float], list[float]]:
    """(chosen scores, rejected scores, per-pair KL to the reference on the chosen answer) for a split."""
    import torch

    chosen, rejected, kls = [], [], []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        n = len(batch)
        rows = [_pair_ids(tokenizer, p["prompt"], p[side], max_length, eos=True)
                for side in ("chosen", "rejected") for p in batch]
        input_ids, attention, completion = _padded(rows, pad, device)
        if objective == "reward":
            scores = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits[:, 0].float()
            chosen += scores[:n].tolist()
            rejected += scores[n:].tolist()
            continue
        positions = (completion[:, 1:] * attention[:, 1:]).bool()  # (2n, T-1): the answer's predicted tokens
        which = positions.nonzero()[:, 0]  # the sequence of each scored token
        targets = input_ids[:, 1:][positions]
        counts = positions.sum(-1).clamp(min=1).float()

        def summed(per_token):
            return torch.zeros(2 * n, device=per_token.device).index_add_(0, which, per_token)

        logp_all = _answer_logprobs(_logits(model, input_ids, attention), positions)
        logps = summed(logp_all.gather(-1, targets[:, None]).squeeze(-1))
        if objective == "dpo":
            if reference is None:  # nothing trained the policy: it is its own reference
                scores, kl = torch.zeros_like(logps), torch.zeros(n)
            else:
                if reference == "adapters":
                    with model.disable_adapter():
                        ref_logits = _logits(model, input_ids, attention)
                else:
                    ref_logits = _logits(reference, input_ids, attention)
                ref_all = _answer_logprobs(ref_logits, positions)
                ref_logps = summed(ref_all.gather(-1, targets[:, None]).squeeze(-1))
                scores = beta * (logps - ref_logps)
                # KL(policy || reference) of the next-token distributions, summed over the vocabulary at each
                # token of the chosen answer, averaged over its tokens
                on_chosen = which < n
                p, q = logp_all[on_chosen], ref_all[on_chosen]
                per_token = next_token_kl(p, q)
                kl = torch.zeros(n, device=per_token.device).index_add_(0, which[on_chosen], per_token) / counts[:n]
            kls += kl.tolist()
        elif objective == "simpo":
            scores = beta * logps / counts
        else:  # orpo: log odds of the answer's mean per-token probability
            mean = (logps / counts).clamp(max=-1e-6)
            scores = mean - torch.log1p(-mean.exp())
        chosen += scores[:n].tolist()
        rejected += scores[n:].tolist()
    return chosen, rejected, kls


def scores_of(chosen: list[float], rejected: list[float]) -> dict[str, float]:
    """Preference accuracy (chosen above rejected; a tie counts half) and mean margin, with standard errors."""
    from harness.metrics.errors import binomial_se

    wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)]
    n = len(wins)
    accuracy = sum(wins) / n if n else 0.0
    margin, margin_se = mean_and_se([c - r for c, r in zip(chosen, rejected)])
    return {"preference_accuracy": accuracy, "margin": margin,
            "se:preference_accuracy": binomial_se(accuracy, n), "se:margin": margin_se}


def evaluate(objective: Objective, model, tokenizer, dataset, batch_size: int, device: str, head: str,
             beta: float = DEFAULT_BETA, reference=None, max_length: int = 512) -> dict[str, float]:
    import torch

    pairs = [dict(zip(dataset.column_names, row)) for row in zip(*(dataset[c] for c in dataset.column_names))]
    model.eval()
    with torch.inference_mode():
        chosen, rejected, kls = _sequence_scores(objective.name, model, tokenizer, pairs, batch_size, device,
                                                 max_length, beta, reference)
    out = scores_of(chosen, rejected)
    if objective.uses_reference:
        out["kl_to_reference"], se = mean_and_se(kls)
        if len(kls) > 1:
            out["se:kl_to_reference"] = se
    return out


def eval_options(task, model_spec) -> dict[str, Any]:
    """evaluate's extras for a trial that builds no trainer (the untrained baseline: its own reference)."""
    return {"beta": task.beta or DEFAULT_BETA, "reference": None, "max_length": model_spec.max_length}


def tokenize(splits, tokenizer, max_length: int, labels: list[str], head: str = "causal_lm"):
    """TRL's trainers tokenize the training pairs themselves, and evaluate tokenizes as they do: the
    splits stay text, in one form. Pairs with no prompt (Anthropic/hh-rlhf: whole transcripts) get the
    shared start of chosen and rejected as their prompt; conversational pairs (lists of messages,
    trl-lib/ultrafeedback_binarized) become text through the model's chat template (TRL's own
    maybe_extract_prompt and maybe_apply_chat_template)."""
    from trl.data_utils import maybe_apply_chat_template, maybe_extract_prompt

    def one_form(example):
        if not example.get("prompt"):
            example = {k: v for k, v in example.items() if k != "prompt"}
            example = {**example, **maybe_extract_prompt(example)}
        return {k: example[k] for k in FIELDS} if isinstance(example["chosen"], str) else \
            maybe_apply_chat_template({k: example[k] for k in FIELDS}, tokenizer)

    first = splits["train"][0]
    if first.get("prompt") and all(isinstance(first[k], str) for k in FIELDS):
        return splits  # already (prompt, chosen, rejected) text
    return splits.map(one_form, remove_columns=splits["train"].column_names)


def longer_answer(splits, split: str) -> dict[str, float]:
    """The trivial predictor: the longer answer is preferred (length is the bias reward models learn
    first). Margin in characters."""
    def length(answer) -> float:  # text, or a conversational answer's messages
        return float(len(answer) if isinstance(answer, str) else sum(len(m["content"]) for m in answer))

    rows = splits[split]
    chosen, rejected = [length(c) for c in rows["chosen"]], [length(r) for r in rows["rejected"]]
    out = scores_of(chosen, rejected)
    return {k: v for k, v in out.items() if "margin" not in k}


def pair_problems(row: dict) -> list[tuple[str, str, str]]:
    """Each answer is text or a non-empty list of messages; a pair whose two answers are the same
    teaches nothing and scores as a coin flip."""
    from harness.tasks.checks import text_problem

    out = []
    for key in ("chosen", "rejected"):
        value = row.get(key)
        if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
            continue
        why = text_problem(value) if not isinstance(value, list) else "is not a list of messages with content"
        if why:
            out.append((key, "empty_text", f"{key} {why}"))
    if not out and row.get("chosen") == row.get("rejected"):
        out.append(("rejected", "same_pair", "chosen and rejected are the same answer: the pair prefers nothing"))
    return out


def method_problem(objective: Objective, method) -> str | None:
    """Why a method cannot train under this objective (validate names it), or None."""
    if method.soft_prompt and objective.name in ("simpo", "orpo"):
        return (f"TRL's {'CPO' if objective.name == 'simpo' else 'ORPO'} trainer compares the logits with the labels "
                "position by position and does not drop a soft prompt's virtual tokens (its DPO and reward "
                "trainers do): use dpo or reward with it")
    return None


def _family(objective: Objective, default: bool) -> TaskFamily:
    metrics = {"preference_accuracy": True, "margin": True}
    if objective.uses_reference:
        metrics["kl_to_reference"] = False
    return TaskFamily(
        name="preference", variant=None if default else objective.name, objective=objective.name,
        summary=f"preference pairs (prompt, chosen, rejected), objective {objective.name}: {objective.summary}; "
                "preference accuracy and margin on held-out pairs" + (", KL to the reference" if objective.uses_reference else ""),
        fields=FIELDS, optional_fields={"prompt": ""}, metrics=metrics, encoder_head=None, decoder_head=objective.head,
        tokenize=tokenize, evaluate=partial(evaluate, objective), trivial=longer_answer,
        trivial_name="the longer answer preferred", metric_range=None,
        trainer=partial(make_trainer, objective), eval_options=eval_options, pairs=True,
        holds_reference=objective.uses_reference, text=(), row_check=pair_problems,
        method_problem=partial(method_problem, objective))


for _name, _objective in OBJECTIVES.items():
    register(_family(_objective, default=_name == "dpo"))
