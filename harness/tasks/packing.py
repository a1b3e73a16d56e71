"""Padding-free micro-batches for decoder LM training (acceleration.packing). Two layouts, chosen by
the attention that will run:

- flash_attention_2: every example of the micro-batch end to end in one row (transformers'
  DataCollatorWithFlattening with the sequence boundaries the varlen kernel reads), no padding at all.
- sdpa and eager compute attention over a whole row under a mask, so one row of T tokens costs T^2:
  on these, packing all examples into one row is slower than padding (measured: 0.75x on SmolLM2,
  CPU). `RowPacker` instead fits the micro-batch's examples into as few rows as it can, each no
  longer than its longest example (first-fit decreasing), so every operation, attention included,
  runs on fewer or equal tokens than the padded batch. Written by hand: transformers' collators pad
  or flatten the whole batch, TRL packs a data set ahead of time, none packs a micro-batch into
  bounded rows.

Both give position ids that restart at each example and no attention mask, from which transformers
builds a block-diagonal causal mask (with the model's KV cache off: see runner/trial.py
no_cache_in_training), and label -100 at each example's first token, so the loss covers the same
tokens as the padded batch's."""

from __future__ import annotations

IGNORE = -100
REAL_TOKENS = "real_tokens"  # the batch's non-padding token count; the trainer takes it out before the model


class RowPacker:
    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    @staticmethod
    def rows(lengths: list[int]) -> list[list[int]]:
        """Indices of the examples in each row: first-fit decreasing into rows of the longest length."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        width = lengths[order[0]] if order else 0
        rows: list[list[int]] = []
        room: list[int] = []
        for i in order:
            for r, free in enumerate(room):
                if lengths[i] <= free:
                    rows[r].append(i)
                    room[r] -= lengths[i]
                    break
            else:
                rows.append([i])
                room.append(width - lengths[i])
        return rows

    def __call__(self, features: list[dict]) -> dict:
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        width = max(lengths)
        ids, labels, positions = [], [], []
        for row in self.rows(lengths):
            r_ids, r_labels, r_pos = [], [], []
            for i in row:
                f = features[i]
                r_ids += list(f["input_ids"])
                r_labels += [IGNORE] + list(f["labels"])[1:]  # the first token is predicted from nothing of its own
                r_pos += range(lengths[i])
            pad = width - len(r_ids)  # the rest of the row: a block of its own (positions from 0), never a label
            ids.append(r_ids + [self.pad_token_id] * pad)
            labels.append(r_labels + [IGNORE] * pad)
            positions.append(r_pos + list(range(pad)))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(positions),
                REAL_TOKENS: torch.tensor(sum(lengths))}


def packing_collator(tokenizer, attention: str | None):
    from transformers import DataCollatorWithFlattening

    if attention == "flash_attention_2":
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE, return_flash_attn_kwargs=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return RowPacker(pad)
