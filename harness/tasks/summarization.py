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
    from harness.metrics import load

    predictions, rate = generate(model, tokenizer, list(dataset["prompt_ids"]), MAX_NEW_TOKENS,
                                 min(batch_size, 16), device)
    scores = load("rouge").compute(predictions=predictions, references=list(dataset["reference"]))
    return {**{k: float(v) for k, v in scores.items()}, "generation_tokens_per_s": rate}


register(TaskFamily(
    name="summarization",
    summary="summarization with decoder LMs: loss on the summary only; greedy generation; ROUGE-1/2/L/Lsum",
    fields=("document", "summary"),
    metrics={"rougeL": True, "rouge1": True, "rouge2": True, "rougeLsum": True},
    encoder_head=None,
    decoder_head="causal_lm",
    tokenize=tokenize,
    evaluate=evaluate,
))
