"""Text classification by decoder LMs the way instruction-tuned models are usually evaluated: the
model reads an instruction naming the labels, is trained to answer with the label word, and is scored
by which label word it finds likeliest (length-normalized log-likelihood), with no classification
head. A suite asks for it with `kind: classification` and `head: verbalizer`."""

from __future__ import annotations

from harness.tasks import register
from harness.tasks.base import TaskFamily
from harness.tasks.classification import choice_scores, majority
from harness.tasks.generative import option_example, score_options, sft_example


def instruction(text: str, labels: list[str]) -> str:
    return f"{text}\n\nClassify the text above as one of: {', '.join(labels)}. Answer with the label only."


def tokenize(splits, tokenizer, max_length: int, labels: list[str], head: str):
    import datasets

    index = {label: i for i, label in enumerate(labels)}

    def sft(batch):
        rows = [sft_example(tokenizer, instruction(t, labels), str(y), max_length)
                for t, y in zip(batch["text"], batch["label"])]
        return {k: [r[k] for r in rows] for k in ("input_ids", "attention_mask", "labels")}

    def scoring(batch):
        rows = [option_example(tokenizer, instruction(t, labels), labels, index[str(y)], max_length)
                for t, y in zip(batch["text"], batch["label"])]
        return {k: [r[k] for r in rows] for k in ("prompt_ids", "option_ids", "answer_index")}

    columns = splits["train"].column_names
    return datasets.DatasetDict({"train": splits["train"].map(sft, batched=True, remove_columns=columns),
                                 "validation": splits["validation"].map(scoring, batched=True, remove_columns=columns),
                                 "test": splits["test"].map(scoring, batched=True, remove_columns=columns)})


def evaluate(model, tokenizer, dataset, batch_size: int, device: str, head: str) -> dict[str, float]:
    return choice_scores(score_options(model, dataset["prompt_ids"], dataset["option_ids"], device, batch_size),
                         list(dataset["answer_index"]))


register(TaskFamily(
    name="classification",
    variant="verbalizer",
    summary="text classification by decoders scoring the label words (no classification head); accuracy, macro-F1",
    fields=("text", "label"),
    metrics={"accuracy": True, "macro_f1": True},
    encoder_head=None,
    decoder_head="causal_lm",
    label_field="label",
    tokenize=tokenize,
    evaluate=evaluate,
    trivial=majority,
    trivial_name="majority class of the training split",
    rung_metric="log_loss",
))
