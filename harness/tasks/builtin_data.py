"""Built-in data sets this project wrote itself (harness/data/*.jsonl, made by
tools/make_builtin_data.py), and long-sequence variants derived from them at first use."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from harness.registry import Registry

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class BuiltinData:
    name: str
    kind: str  # task family it suits
    summary: str
    derive: Callable[[Path], None] | None = None  # writes the file at first use (not committed)

    @property
    def path(self) -> Path:
        if self.derive is None:
            return DATA_DIR / f"{self.name}.jsonl"
        cache = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")) / "data"
        target = cache / f"{self.name}-v2.jsonl"  # v2: from the harder sentiment set
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            self.derive(tmp)
            tmp.replace(target)
        return target

    def columns(self) -> list[str]:
        with open(self.path, encoding="utf-8") as f:
            return [c for c in json.loads(f.readline()) if c != "split"]


def _long_sentiment(target: Path, words: int = 1100) -> None:
    """Throughput-benchmark data: each example is one labelled sentence followed by other sentences
    of the same label until ~1,100 words (so max_length 1024 fills every sequence)."""
    rows = [json.loads(line) for line in open(DATA_DIR / "sentiment.jsonl", encoding="utf-8")]
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row["text"])
    rng = random.Random(7)
    with open(target, "w", encoding="utf-8") as f:
        for split, n in (("train", 96), ("validation", 16), ("test", 32)):
            for i in range(n):
                label = "positive" if i % 2 == 0 else "negative"
                parts: list[str] = []
                while sum(len(p.split()) for p in parts) < words:
                    parts.append(rng.choice(by_label[label]))
                f.write(json.dumps({"text": " ".join(parts), "label": label, "split": split}) + "\n")


BUILTIN_DATA: Registry[BuiltinData] = Registry("builtin data set")
for _entry in (
    BuiltinData("sentiment", "classification",
                "700 composed review sentences (positive/negative), 85% of them hard (negation, contrast, concession, verdicts with no sentiment word), split 400/100/200, balanced"),
    BuiltinData("dialogsum-mini", "summarization",
                "300 composed support-chat dialogues with one-sentence summaries, split 200/40/60"),
    BuiltinData("medqa-mini", "qa",
                "460 composed questions: yes/no/maybe over a trial abstract, and lettered multiple choice; 300/60/100"),
    BuiltinData("preference-support", "preference",
                "360 support questions, each with a helpful answer (chosen) and an unhelpful one (rejected: the wrong "
                "remedy in the same words, a question already answered, a deflection); half the pairs have the longer "
                "answer rejected; split 240/40/80"),
    BuiltinData("sentiment-long", "classification",
                "144 ~1,100-word review passages made from the sentiment set, for throughput runs at 1k tokens",
                derive=_long_sentiment),
):
    BUILTIN_DATA.register(_entry.name, _entry)


@lru_cache(maxsize=None)
def all_builtin_texts() -> tuple[str, ...]:
    """Every text field of every committed built-in data set (the tiny models' tokenizer vocabulary)."""
    texts = []
    for name in BUILTIN_DATA:
        entry = BUILTIN_DATA.get(name)
        if entry.derive is not None:
            continue
        with open(entry.path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                for key, value in row.items():
                    if key != "split":
                        texts.extend(map(str, value) if isinstance(value, list) else [str(value)])
    return tuple(texts)
