"""Summarization with decoder LMs: an instruction prompt (chat template where the tokenizer has one),
the loss on the summary tokens only, and evaluation by batched greedy generation scored with
ROUGE-1/2/L/Lsum as the reference rouge-score package computes them."""

from __future__ import annotations

from harness.tasks import register
from harness.tasks.base import TaskFamily
from harness.tasks.generative import generate, prompt_ids, sft_example

MAX_NEW_TOKENS = 64


def instruction(document: str) -> str:
    return f"{document}\n\nSummarize the text above in one or two sentences."


def tokenize(splits, tokenizer, max_length: int, labels, head: str):
    import datasets

    def sft(batch):
        rows = [sft_example(tokenizer, instruction(d), s, max_length) for d, s in zip(batch["document"], batch["summary"])]
        return {k: [r[k] for r in rows] for k in ("input_ids", "attention_mask", "labels")}

    def prompts(batch):
        return {"prompt_ids": [prompt_ids(tokenizer, instruction(d))[-(max_length - MAX_NEW_TOKENS):]
                               for d in batch["document"]], "reference": batch["summary"]}

    columns = splits["train"].column_names
    return datasets.DatasetDict({
        "train": splits["train"].map(sft, batched=True, remove_columns=columns),
        "validation": splits["validation"].map(prompts, batched=True, remove_columns=columns),
        "test": splits["test"].map(prompts, batched=True, remove_columns=columns),
    })


def evaluate(model, tokenizer, dataset, batch_size: int, device: str, head: str) -> dict[str, float]:
    predictions, rate = generate(model, tokenizer, list(dataset["prompt_ids"]), MAX_NEW_TOKENS,
                                 min(batch_size, 16), device)
    return {**rouge_with_errors(predictions, list(dataset["reference"])), "generation_tokens_per_s": rate}


def rouge_with_errors(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum means, each with its bootstrap standard error over the pairs ("se:<type>")."""
    from harness.metrics import load
    from harness.metrics.errors import mean_se

    scores = load("rouge").compute(predictions=predictions, references=references, per_example=True)
    out = {k: float(v) for k, v in scores.items() if not k.startswith("per_example:")}
    out.update({f"se:{k.removeprefix('per_example:')}": mean_se(v) for k, v in scores.items()
                if k.startswith("per_example:")})
    return out


LEAD = 3


def lead_sentences(document: str, n: int = LEAD) -> str:
    """The document's first n sentences (lines count as sentence ends: dialogue turns)."""
    import re

    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+|\n+", document) if x.strip()]
    return " ".join(sentences[:n])


def lead(splits, split: str) -> dict[str, float]:
    """Lead-3, the summarization literature's baseline: the first three sentences as the summary."""
    data = splits[split]
    return rouge_with_errors([lead_sentences(d) for d in data["document"]], list(data["summary"]))


register(TaskFamily(
    name="summarization",
    summary="summarization with decoder LMs: loss on the summary only; greedy generation; ROUGE-1/2/L/Lsum",
    fields=("document", "summary"),
    metrics={"rougeL": True, "rouge1": True, "rouge2": True, "rougeLsum": True},
    encoder_head=None,
    decoder_head="causal_lm",
    tokenize=tokenize,
    evaluate=evaluate,
    trivial=lead,
    trivial_name=f"lead-{LEAD}: the document's first {LEAD} sentences",
))
