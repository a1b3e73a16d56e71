"""What training made the model forget, measured in the trial process after the test split:

- decoder LMs: forgetting = mean next-token NLL on general text after training minus before (per
  document, paired, with its standard error over documents), and drift = KL(tuned || base) of the
  next-token distributions over the task's validation inputs, nats per token;
- other heads (encoders, classifiers): representation drift = 1 - linear CKA between the base's and
  the tuned model's mean-pooled last hidden states of the same texts.

"Before" is always the base itself, never the method as initialised: under a peft method every
adapter is disabled (peft's own switch), otherwise the trained parameters are swapped back to their
values before training, which are the base's for every non-peft method here (full, selective, and
bottleneck adapters, whose up-projection starts at zero). A soft prompt is not an identity at its
start, so measuring "before" through it would count its random init as forgetting undone (peft's
method comparison had that bug: huggingface/peft#3419).

Labels are shifted exactly as the model's own loss shifts them (position t predicts token t+1; the
first token is never a target; padding never is). The time taken is capped at a share of the trial:
documents are read in a fixed seeded order, in batches, until the cap, past a minimum."""

from __future__ import annotations

import json
import random
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness.metrics.divergence import linear_cka, mean_and_se, next_token_kl
from harness.spec import RetentionSpec

BUILTIN_TEXT = Path(__file__).resolve().parents[1] / "data" / "retention.jsonl"
BUILTIN_NAME = "built-in general text (harness/data/retention.jsonl)"


def retention_texts(spec: RetentionSpec, base_dir: str | None = None) -> tuple[tuple[str, ...], str]:
    """(documents in a fixed seeded order, at most spec.documents, where they came from)."""
    return _texts(spec.model_dump_json(), base_dir)


@lru_cache(maxsize=4)
def _texts(spec_json: str, base_dir: str | None) -> tuple[tuple[str, ...], str]:
    spec = RetentionSpec.model_validate_json(spec_json)
    data = spec.data
    if data is None:
        with open(BUILTIN_TEXT, encoding="utf-8") as f:
            texts, source = [json.loads(line)["text"] for line in f if line.strip()], BUILTIN_NAME
    else:
        import datasets

        datasets.disable_progress_bars()
        if data.hub is not None:
            ds = datasets.load_dataset(data.hub, data.config, split=data.split)
            source = f"{data.hub}{f' ({data.config})' if data.config else ''}, split {data.split}"
        else:
            files = [str(Path(base_dir or ".") / f) for f in data.files]
            kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(
                Path(files[0]).suffix.lower(), "text")
            ds = datasets.load_dataset(kind, data_files=files, split="train")
            source = ", ".join(data.files)
        column = data.column if data.column in ds.column_names else "text"
        texts = [t for t in ds[column] if isinstance(t, str) and t.strip()]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    return tuple(texts[i] for i in order[:spec.documents]), source


class Snapshot:
    """The trainable parameters' values before training, on disk (not in the trial's memory, where
    they would count in its train peak): what a non-peft model is swapped back to for "before"."""

    def __init__(self, model):
        import torch

        self.folder = tempfile.TemporaryDirectory(prefix="harness-retention-")
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.path = Path(self.folder.name) / "before.pt"
        # CPU tensors are written from where they are (no second copy in the trial's memory)
        torch.save({n: params[n].detach() if params[n].device.type == "cpu" else params[n].detach().cpu()
                    for n in self.names}, self.path)
        self._loaded = None

    @contextmanager
    def swapped(self, model):
        """The model with its trained parameters replaced by their values before training."""
        import torch

        if self._loaded is None:  # memory-mapped: pages are read as the forward touches them
            self._loaded = torch.load(self.path, mmap=True, weights_only=True)
        params = dict(model.named_parameters())
        kept = {}
        try:
            for name in self.names:
                p = params[name]
                kept[name] = p.data
                p.data = self._loaded[name].to(device=p.device, dtype=p.dtype)
            yield model
        finally:
            for name, data in kept.items():
                params[name].data = data

    def close(self) -> None:
        self._loaded = None
        self.folder.cleanup()


@contextmanager
def base_view(model, snapshot: Snapshot | None):
    """A context that gives the module computing what the base computes (see the module's docstring).
    Soft prompts and prefixes leave the wrapped model untouched: it is called directly (peft's
    disable_adapter fails for prompt learning on heads that do not generate)."""
    from harness.methods.base import is_peft

    if is_peft(model):
        if model.peft_config[model.active_adapter].is_prompt_learning:
            yield model.get_base_model()
        else:
            with model.disable_adapter():
                yield model
    elif snapshot is not None:
        with snapshot.swapped(model):
            yield model
    else:
        yield model  # nothing was trained


def base_described(model) -> str:
    from harness.methods.base import is_peft

    return ("the base: every adapter disabled (peft's disable_adapter)" if is_peft(model) else
            "the base: the trained parameters swapped back to their values before training")


class BaseCache:
    """The base's per-document NLL, measured once per model (and quantized variant) and kept in
    results/<suite>/retention/base-<key>.json: a later run reads its "before" from it and runs only the
    tuned model. The key holds everything the figure depends on (model, dtype, variant, text, lengths,
    batching, device, torch), so a hit is bit for bit what the run would compute; workers that race
    merge their documents into one file, written atomically."""

    def __init__(self, folder: str | Path, **key_parts):
        import hashlib

        key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.path = Path(folder) / f"base-{key}.json"
        self.key_parts = key_parts
        self.values = self._read()
        self.added: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")).get("before_nll", {}))
        except (OSError, ValueError, AttributeError):
            return {}

    def get(self, index: int) -> float | None:
        return self.values.get(str(index))

    def put(self, index: int, value: float) -> None:
        self.values[str(index)] = self.added[str(index)] = value

    def save(self) -> None:
        from harness.records.store import write_text_atomic

        if self.added:
            merged = {**self._read(), **self.added}
            write_text_atomic(self.path, json.dumps({"key": self.key_parts, "before_nll": merged}, default=str))


@dataclass
class Clock:
    """Stops a measure after `seconds`, but never before `minimum` items."""

    seconds: float
    minimum: int
    start: float = field(default_factory=time.perf_counter)

    def more(self, done: int) -> bool:
        return done < self.minimum or time.perf_counter() - self.start < self.seconds


@contextmanager
def _padding_side(tokenizer, side: str):
    before = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = before


def _encode(tokenizer, texts, max_tokens: int, device: str):
    with _padding_side(tokenizer, "right"):  # position ids count from each row's first token, as unpadded
        enc = tokenizer(list(texts), truncation=True, max_length=max_tokens, padding=True, return_tensors="pt")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def _last(tensor, length: int):
    """The positions of the input itself: a soft prompt's virtual tokens come first in peft's outputs."""
    return tensor[:, -length:]


def token_nll(model, input_ids, attention):
    """(per-document summed NLL, per-document target count) of next-token prediction: the logits at
    position t against the token at t+1, padding left out, in float32 as transformers' causal-LM loss."""
    import torch

    logits = _last(model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits, input_ids.shape[1])
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets, mask = input_ids[:, 1:], attention[:, 1:].float()
    nll = -logp.gather(-1, targets[..., None]).squeeze(-1) * mask
    return nll.sum(-1), mask.sum(-1)


def forgetting(model, view, tokenizer, texts, *, device: str, max_tokens: int, batch: int, clock: Clock,
               cache: BaseCache | None = None) -> dict:
    """Mean per-token NLL per document after (the model) and before (under `view`, or from the cache),
    paired by document."""
    import torch

    before, after, tokens, cached = [], [], 0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            if not clock.more(len(after)):
                break
            ids, mask = _encode(tokenizer, texts[start:start + batch], max_tokens, device)
            a_sum, count = token_nll(model, ids, mask)
            indexes = range(start, start + ids.shape[0])
            known = [cache.get(i) for i in indexes] if cache is not None else [None]
            if all(v is not None for v in known):
                b_mean = torch.tensor(known, dtype=torch.float64)
                cached += len(known)
            else:
                with view() as base:
                    b_sum, _ = token_nll(base, ids, mask)
                b_mean = (b_sum / count.clamp(min=1)).double().cpu()
                if cache is not None:
                    for i, value in zip(indexes, b_mean.tolist()):
                        cache.put(i, value)
            keep = (count > 0).cpu()
            after += (a_sum / count.clamp(min=1)).double().cpu()[keep].tolist()
            before += b_mean[keep].tolist()
            tokens += int(count.sum())
    if cache is not None:
        cache.save()
    diff, se = mean_and_se([a - b for a, b in zip(after, before)])
    return {"documents": len(after), "tokens": tokens, "before_nll": mean_and_se(before)[0],
            "after_nll": mean_and_se(after)[0], "forgetting": diff, "forgetting_se": se, "cached_documents": cached}


def drift(model, view, rows: list[list[int]], pad: int, *, device: str, batch: int, clock: Clock) -> dict:
    """KL(tuned || base) of the next-token distributions at every position of each input, averaged over its
    positions, then over inputs (with its standard error over inputs)."""
    import torch

    per_input = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            if not clock.more(len(per_input)):
                break
            chunk = rows[start:start + batch]
            width = max(len(r) for r in chunk)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in chunk], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in chunk], device=device)

            def logp(module):
                out = module(input_ids=ids, attention_mask=mask, use_cache=False).logits
                return torch.log_softmax(_last(out, width).float(), dim=-1)

            tuned = logp(model)
            with view() as base:
                reference = logp(base)
            kl = next_token_kl(tuned, reference) * mask
            per_input += (kl.sum(-1) / mask.sum(-1)).tolist()
    mean, se = mean_and_se(per_input)
    return {"drift": mean if per_input else None, "drift_se": se if len(per_input) > 1 else None,
            "drift_examples": len(per_input)}


def pooled(model, tokenizer, texts, *, device: str, max_tokens: int, batch: int):
    """Mean-pooled last hidden states of the texts (n x d), padding left out."""
    import torch

    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            ids, mask = _encode(tokenizer, texts[start:start + batch], max_tokens, device)
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            hidden, m = _last(hidden, ids.shape[1]).float(), mask[..., None].float()
            out.append((hidden * m).sum(1) / m.sum(1))
    return torch.cat(out)


def representation_drift(model, view, tokenizer, texts, *, device: str, max_tokens: int, batch: int,
                         clock: Clock) -> dict:
    """1 - linear CKA of the base's and the tuned model's pooled representations of the same texts. CKA
    reads all texts at once, so the time cap picks how many from the first batch's time."""
    t0 = time.perf_counter()
    first = texts[:batch]
    tuned = [pooled(model, tokenizer, first, device=device, max_tokens=max_tokens, batch=batch)]
    with view() as module:
        base = [pooled(module, tokenizer, first, device=device, max_tokens=max_tokens, batch=batch)]
    per_text = (time.perf_counter() - t0) / max(len(first), 1)
    left = max(clock.seconds - (time.perf_counter() - clock.start), 0.0)
    n = min(len(texts), max(clock.minimum, len(first) + int(left / per_text) if per_text else len(texts)))
    rest = texts[len(first):n]
    if rest:
        tuned.append(pooled(model, tokenizer, rest, device=device, max_tokens=max_tokens, batch=batch))
        with view() as module:
            base.append(pooled(module, tokenizer, rest, device=device, max_tokens=max_tokens, batch=batch))
    import torch

    cka = linear_cka(torch.cat(tuned), torch.cat(base))
    return {"documents": n, "representation_drift": 1.0 - cka}


def measure(model, tokenizer, *, spec: RetentionSpec, causal_lm: bool, snapshot: Snapshot | None,
            drift_rows: list[list[int]] | None, device: str, seconds: float, base_dir: str | None = None,
            cache: BaseCache | None = None) -> dict:
    """Every retention figure this model has (causal LMs: forgetting and drift; others: representation
    drift), within `seconds` past the minimums; the fields of records.schema.Retention."""
    t0 = time.perf_counter()
    texts, source = retention_texts(spec, base_dir)
    view = lambda: base_view(model, snapshot)  # noqa: E731
    out = {"data": source, "base": base_described(model), "budget_s": seconds}
    if causal_lm:
        share = 0.5 if drift_rows else 1.0
        out.update(forgetting(model, view, tokenizer, texts, device=device, max_tokens=spec.max_tokens,
                              batch=spec.batch_size, clock=Clock(seconds * share, spec.min_documents), cache=cache),
                   measure="nll")
        if drift_rows:
            left = seconds - (time.perf_counter() - t0)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            out.update(drift(model, view, drift_rows, pad, device=device, batch=spec.batch_size,
                             clock=Clock(left, min(spec.min_documents, len(drift_rows)))))
    else:
        out.update(representation_drift(model, view, tokenizer, texts, device=device, max_tokens=spec.max_tokens,
                                        batch=max(spec.batch_size, 16), clock=Clock(seconds, spec.min_documents)),
                   measure="representation")
    if spec.lm_eval is not None:
        from harness.measure.lm_eval import before_and_after

        out["lm_eval"] = before_and_after(model, view, tokenizer, spec.lm_eval, device=device, base_dir=base_dir)
    out["seconds"] = time.perf_counter() - t0
    return out
