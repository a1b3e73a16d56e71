"""Medical question answering with fixed answer options: yes/no/maybe with a context (PubMedQA's
shape) or lettered multiple choice (MedMCQA's shape). Decoder LMs train on the answer text and
pick the option with the highest length-normalized log-likelihood; encoders classify."""

from __future__ import annotations

import json
import string

from harness.tasks import register
from harness.tasks.base import TaskFamily
from harness.tasks.classification import choice_scores, scores
from harness.tasks.generative import option_example, score_options, sft_example

YES_NO_MAYBE = ["yes", "no", "maybe"]


def options_of(value) -> list[str]:
    """Options from a list, a JSON list, or 'a | b | c'; yes/no/maybe where the data has none."""
    if value is None or value == "" or value == []:
        return list(YES_NO_MAYBE)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(o) for o in json.loads(text)]
        return [o.strip() for o in text.split("|")]
    return [str(o) for o in value]


def answer_index(answer, options: list[str]) -> int:
    """The answer as an option index, given as the option's text, its letter (A, B, ...) or its index."""
    text = str(answer).strip()
    lowered = [o.lower() for o in options]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if len(text) == 1 and text.upper() in string.ascii_uppercase[: len(options)]:
        return string.ascii_uppercase.index(text.upper())
    if text.isdigit() and int(text) < len(options):
        return int(text)
    raise ValueError(f"answer {answer!r} is none of the options {options}")


def answer_problems(row: dict) -> list[tuple[str, str, str]]:
    """A row whose answer is none of its options (by text, letter or index) cannot be scored."""
    try:
        options = options_of(row.get("options"))
    except (ValueError, TypeError) as exc:
        return [("options", "unparseable", f"options cannot be read as a list ({exc})")]
    if not options or any(not o.strip() for o in options):
        return [("options", "empty_text", "an option is empty")]
    try:
        answer_index(row.get("answer"), options)
    except ValueError as exc:
        return [("answer", "answer_not_an_option", str(exc))]
    return []


def question_text(question: str, context: str, options: list[str]) -> str:
    lettered = options != YES_NO_MAYBE
    parts = [f"Context: {context}"] if context else []
    parts.append(f"Question: {question}")
    if lettered:
        parts += [f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(options)]
        parts.append("Answer with the correct option.")
    else:
        parts.append("Answer yes, no or maybe.")
    return "\n".join(parts)


def answer_text(options: list[str], index: int) -> str:
    return options[index] if options == YES_NO_MAYBE else f"{string.ascii_uppercase[index]}. {options[index]}"


def _rows(split):
    for q, c, o, a in zip(split["question"], split["context"], split["options"], split["answer"]):
        options = options_of(o)
        yield str(q), str(c or ""), options, answer_index(a, options)


def tokenize(splits, tokenizer, max_length: int, labels: list[str], head: str):
    import datasets

    columns = splits["train"].column_names
    if head == "sequence_classification":  # encoders: the question with its options, classified
        from harness.tasks.classification import tokenize as classify

        def as_text(batch):
            return {"text": [question_text(q, c, o) for q, c, o, _ in _rows(batch)],
                    "label": [str(a) for a in batch["answer"]]}

        return classify(splits.map(as_text, batched=True, remove_columns=columns), tokenizer, max_length, labels)

    def sft(batch):
        out = [sft_example(tokenizer, question_text(q, c, o), answer_text(o, a), max_length) for q, c, o, a in _rows(batch)]
        return {k: [r[k] for r in out] for k in ("input_ids", "attention_mask", "labels")}

    def scoring(batch):
        rows = [option_example(tokenizer, question_text(q, c, o), [answer_text(o, i) for i in range(len(o))], a,
                               max_length) for q, c, o, a in _rows(batch)]
        return {k: [r[k] for r in rows] for k in ("prompt_ids", "option_ids", "answer_index")}

    return datasets.DatasetDict({"train": splits["train"].map(sft, batched=True, remove_columns=columns),
                                 "validation": splits["validation"].map(scoring, batched=True, remove_columns=columns),
                                 "test": splits["test"].map(scoring, batched=True, remove_columns=columns)})


def evaluate(model, tokenizer, dataset, batch_size: int, device: str, head: str) -> dict[str, float]:
    if head == "sequence_classification":
        from harness.tasks.classification import evaluate as classify

        return classify(model, tokenizer, dataset, batch_size, device)
    return choice_scores(score_options(model, dataset["prompt_ids"], dataset["option_ids"], device, batch_size),
                         list(dataset["answer_index"]))


def majority_answer(splits, split: str) -> dict[str, float]:
    """Every question gets the training split's most frequent answer position (PubMedQA: "yes", 55%)."""
    from collections import Counter

    most = Counter(a for *_, a in _rows(splits["train"])).most_common(1)[0][0]
    rows = list(_rows(splits[split]))
    return scores([most if most < len(o) else 0 for _, _, o, _ in rows], [a for *_, a in rows])


register(TaskFamily(
    name="qa",
    summary="medical QA with options (yes/no/maybe or lettered): decoders score options, encoders classify; "
            "accuracy, macro-F1",
    fields=("question", "context", "options", "answer"),
    optional_fields={"context": "", "options": ""},
    metrics={"accuracy": True, "macro_f1": True},
    encoder_head="sequence_classification",
    decoder_head="causal_lm",
    label_field="answer",
    tokenize=tokenize,
    evaluate=evaluate,
    trivial=majority_answer,
    trivial_name="the training split's most frequent answer",
    rung_metric="log_loss",
    row_check=answer_problems,
))
