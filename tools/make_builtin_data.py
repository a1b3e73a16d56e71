"""Writes harness/data/*.jsonl: small labelled data sets this project composes itself (no text is
copied from any public data set). Run `python tools/make_builtin_data.py`; the output is seeded,
so the same files come out every time, and they are committed so users can read them."""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "harness" / "data"

SUBJECTS = {
    "film": ["the film", "the movie", "the plot", "the acting", "the soundtrack", "the ending", "the script",
             "the lead actor", "the cinematography", "the dialogue", "the pacing", "the sequel"],
    "food": ["the pasta", "the service", "the dessert", "the waiter", "the soup", "the coffee", "the menu",
             "the pizza", "the kitchen staff", "the breakfast", "the curry", "the wine list"],
    "product": ["the battery", "the screen", "the keyboard", "the camera", "the charger", "the speaker",
                "the update", "the headphones", "the blender", "the vacuum", "the app", "the printer"],
    "travel": ["the hotel room", "the flight", "the front desk", "the beach", "the tour guide", "the train",
               "the pool", "the check-in", "the view", "the bed", "the location", "the shuttle"],
    "book": ["the novel", "the chapter", "the author", "the translation", "the illustrations", "the story",
             "the characters", "the cover", "the prose", "the final act", "the audiobook", "the narrator"],
}
POS_ADJ = ["wonderful", "excellent", "delightful", "superb", "charming", "brilliant", "reliable", "fantastic",
           "memorable", "impressive", "lovely", "outstanding", "pleasant", "gorgeous", "clever", "solid",
           "moving", "fresh", "friendly", "smooth", "generous", "stunning", "tasty", "comfortable"]
NEG_ADJ = ["terrible", "awful", "boring", "dull", "disappointing", "sloppy", "unreliable", "bland", "clumsy",
           "tedious", "mediocre", "broken", "rude", "noisy", "stale", "flimsy", "confusing", "painful",
           "overpriced", "forgettable", "greasy", "cramped", "slow", "shallow"]
ADVERBS = ["", "really ", "truly ", "quite ", "absolutely ", "surprisingly ", "rather ", "honestly "]
POS_VERBS = ["loved", "enjoyed", "adored", "appreciated", "was thrilled with", "was impressed by"]
NEG_VERBS = ["hated", "regretted", "was annoyed by", "could not stand", "was let down by", "disliked"]
POS_TAILS = ["I would gladly go back.", "Highly recommended.", "Worth every penny.", "I will tell my friends.",
             "Five stars from me.", "A real pleasure."]
NEG_TAILS = ["I want my money back.", "Avoid it.", "Never again.", "What a waste of time.",
             "One star is too many.", "I will not return."]


def _subject(rng: random.Random, domain: str) -> str:
    return rng.choice(SUBJECTS[domain])


def _sentence(rng: random.Random, positive: bool) -> str:
    good, bad = (POS_ADJ, NEG_ADJ) if positive else (NEG_ADJ, POS_ADJ)
    form = rng.randrange(7)
    domain = rng.choice(sorted(SUBJECTS))  # one domain per sentence, so contrasts stay plausible
    s = _subject(rng, domain)
    if form == 0:
        return f"{s.capitalize()} was {rng.choice(ADVERBS)}{rng.choice(good)}."
    if form == 1:
        return f"I {rng.choice(POS_VERBS if positive else NEG_VERBS)} {s}."
    if form == 2:  # negation flips the adjective: "not boring" is praise
        return f"{s.capitalize()} was not {rng.choice(bad)} at all."
    if form == 3:  # the clause after "but" carries the verdict
        return (f"{s.capitalize()} was {rng.choice(bad)}, but {_subject(rng, domain)} was "
                f"{rng.choice(ADVERBS)}{rng.choice(good)}.")
    if form == 4:
        return (f"Although {_subject(rng, domain)} seemed {rng.choice(bad)}, {s} turned out "
                f"{rng.choice(good)}.")
    if form == 5:
        return f"{s.capitalize()} felt {rng.choice(good)} and {rng.choice(good)}. {rng.choice(POS_TAILS if positive else NEG_TAILS)}"
    return f"{rng.choice(POS_TAILS if positive else NEG_TAILS)} {s.capitalize()} was {rng.choice(good)}."


def make_sentiment(sizes: dict[str, int], seed: int = 13) -> list[dict]:
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = []
    for split, size in sizes.items():
        for i in range(size):
            positive = i % 2 == 0
            while True:
                text = _sentence(rng, positive)
                if text not in seen:
                    break
            seen.add(text)
            rows.append({"text": text, "label": "positive" if positive else "negative", "split": split})
    return rows


def write_jsonl(name: str, rows: list[dict]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_jsonl("sentiment", make_sentiment({"train": 400, "validation": 100, "test": 200}))
    print("wrote", sorted(p.name for p in OUT.glob("*.jsonl")))
