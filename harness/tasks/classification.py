"""Text classification (sentiment): a classification head on an encoder or decoder; accuracy, macro-F1,
and the log-loss of the true label (the continuous score search.rung_metric: loss judges early runs by)."""

from __future__ import annotations

from harness.tasks import register
from harness.tasks.base import TaskFamily


def scores(predictions, references, losses=None) -> dict[str, float]:
    """Accuracy and macro-F1, each with its standard error over the examples ("se:<metric>"); with
    `losses` (each example's negative log-likelihood of its true label), their mean as log_loss."""
    # sklearn is the reference implementation behind evaluate's accuracy and f1 metrics; we call it
    # directly because evaluate.load('accuracy') fetches metric code from the hub at run time.
    from sklearn.metrics import accuracy_score, f1_score

    from harness.metrics.errors import binomial_se, macro_f1_se

    accuracy = float(accuracy_score(references, predictions))
    out = {"accuracy": accuracy, "macro_f1": float(f1_score(references, predictions, average="macro")),
           "se:accuracy": binomial_se(accuracy, len(references)),
           "se:macro_f1": macro_f1_se(list(predictions), list(references))}
    if losses is not None:
        import numpy as np

        losses = np.asarray(losses, dtype=float)
        out["log_loss"] = float(losses.mean())
        out["se:log_loss"] = float(losses.std(ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else float("nan")
    return out


def true_label_losses(rows, references) -> list[float]:
    """Each example's negative log-likelihood of its true class under a softmax over its row of class
    scores (logits, or option log-likelihoods), as scikit-learn's log_loss averages it. Accuracy at an
    early step is often the same constant-class guess for every configuration (0.49 or 0.51 on
    rt-polarity after 10 steps); this moves with every step of learning, so it can rank them."""
    import torch

    rows = torch.as_tensor(rows, dtype=torch.float32) if not isinstance(rows, torch.Tensor) else rows.float()
    refs = torch.as_tensor(references, dtype=torch.long, device=rows.device)
    return torch.nn.functional.cross_entropy(rows, refs, reduction="none").tolist()


def choice_scores(option_scores, answers) -> dict[str, float]:
    """scores() of a decoder's picks among each example's options (rows of length-normalized
    log-likelihoods, harness/tasks/generative.score_options; rows may differ in length): the likeliest
    option is its pick, and its log-loss is that of a softmax over the row (true_label_losses, a row at
    a time since rows differ in length)."""
    picks = [max(range(len(row)), key=row.__getitem__) for row in option_scores]
    losses = [true_label_losses([row], [answer])[0] for row, answer in zip(option_scores, answers)]
    return scores(picks, list(answers), losses)


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
    preds, refs, losses = [], [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            columns = dataset[start:start + batch_size]  # one Arrow slice, not one lookup per row
            batch = collate([dict(zip(columns, row)) for row in zip(*columns.values())])
            labels = batch.pop("labels")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            refs.extend(labels.tolist())
            preds.extend(logits.argmax(-1).tolist())
            losses.extend(true_label_losses(logits, labels))
    return scores(preds, refs, losses)


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
    rung_metric="log_loss",
))
