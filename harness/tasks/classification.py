"""Text classification (sentiment): a classification head on an encoder or decoder; accuracy, macro-F1."""

from __future__ import annotations

from harness.tasks import register
from harness.tasks.base import TaskFamily


def scores(predictions, references) -> dict[str, float]:
    """Accuracy and macro-F1, each with its standard error over the examples ("se:<metric>")."""
    # sklearn is the reference implementation behind evaluate's accuracy and f1 metrics; we call it
    # directly because evaluate.load('accuracy') fetches metric code from the hub at run time.
    from sklearn.metrics import accuracy_score, f1_score

    from harness.metrics.errors import binomial_se, macro_f1_se

    accuracy = float(accuracy_score(references, predictions))
    return {"accuracy": accuracy, "macro_f1": float(f1_score(references, predictions, average="macro")),
            "se:accuracy": binomial_se(accuracy, len(references)),
            "se:macro_f1": macro_f1_se(list(predictions), list(references))}


def tokenize(splits, tokenizer, max_length: int, labels: list[str], head: str = "sequence_classification"):
    index = {label: i for i, label in enumerate(labels)}

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["labels"] = [index[str(label)] for label in batch["label"]]
        return enc

    return splits.map(encode, batched=True, remove_columns=splits["train"].column_names)


def evaluate(model, tokenizer, dataset, batch_size: int, device: str, head: str = "sequence_classification") -> dict[str, float]:
    import torch

    from harness.tasks.heads import HEADS

    collate = HEADS.get(head).collator(tokenizer)
    model.eval()
    preds, refs = [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            columns = dataset[start:start + batch_size]  # one Arrow slice, not one lookup per row
            batch = collate([dict(zip(columns, row)) for row in zip(*columns.values())])
            refs.extend(batch.pop("labels").tolist())
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            preds.extend(logits.argmax(-1).tolist())
    return scores(preds, refs)


def majority(splits, split: str, field: str = "label") -> dict[str, float]:
    """Every example of the split gets the training set's most frequent label."""
    from collections import Counter

    most = Counter(str(v) for v in splits["train"][field]).most_common(1)[0][0]
    refs = [str(v) for v in splits[split][field]]
    return scores([most] * len(refs), refs)


register(TaskFamily(
    name="classification",
    summary="text classification (sentiment): classification head; accuracy and macro-F1",
    fields=("text", "label"),
    metrics={"accuracy": True, "macro_f1": True},
    encoder_head="sequence_classification",
    decoder_head="sequence_classification",
    label_field="label",
    tokenize=tokenize,
    evaluate=evaluate,
    trivial=majority,
    trivial_name="majority class of the training split",
))
