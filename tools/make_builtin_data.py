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


# Sentences whose polarity no single word gives away: the verdict sits in negation, in the clause
# after a contrast, in an idiom, or in what the writer did. Each is unambiguous to a reader (no label
# is flipped at random); they are what makes the set hard for a small model after a few steps.
POS_DEEDS = ["I have already booked to go again.", "I finished it in one sitting and started over.",
             "I would happily pay twice the price.", "I kept telling everyone about it the next day.",
             "I lost track of time completely.", "I bought a second one as a gift.",
             "I did not want it to end.", "I have recommended it to half my office."]
NEG_DEEDS = ["I checked my watch every five minutes.", "I walked out halfway through.",
             "I returned it the next morning.", "I fell asleep twice.", "I asked for a refund on the spot.",
             "I will not be going back.", "I gave it away the same week.", "I wanted those hours back."]
POS_VERDICTS = ["overall I loved it", "in the end it won me over", "all told it was worth it",
                "I would still go back tomorrow"]
NEG_VERDICTS = ["overall it was a letdown", "in the end it was not worth it", "all told I regret it",
                "I would not go back"]


def _sentence(rng: random.Random, positive: bool, hard: bool) -> str:
    good, bad = (POS_ADJ, NEG_ADJ) if positive else (NEG_ADJ, POS_ADJ)
    domain = rng.choice(sorted(SUBJECTS))  # one domain per sentence, so contrasts stay plausible
    s = _subject(rng, domain)
    other = _subject(rng, domain)
    if not hard:
        form = rng.randrange(3)
        if form == 0:
            return f"{s.capitalize()} was {rng.choice(ADVERBS)}{rng.choice(good)}."
        if form == 1:
            return f"I {rng.choice(POS_VERBS if positive else NEG_VERBS)} {s}."
        return f"{rng.choice(POS_TAILS if positive else NEG_TAILS)} {s.capitalize()} was {rng.choice(good)}."
    form = rng.randrange(8)
    if form == 0:  # negation of the opposite word: "not boring at all" is praise
        return f"{s.capitalize()} was not {rng.choice(bad)} at all."
    if form == 1:  # the opposite praise first, the overall verdict after "but"
        return f"{s.capitalize()} was {rng.choice(bad)}, but {rng.choice(POS_VERDICTS if positive else NEG_VERDICTS)}."
    if form == 2:  # concession: the verdict is in the main clause, against the word in the first
        return (f"Despite {rng.choice(['a', 'the'])} {rng.choice(bad)} {other.split(' ', 1)[1]}, "
                f"{rng.choice(POS_VERDICTS if positive else NEG_VERDICTS)}.")
    if form == 3:  # what the writer did, with no sentiment word at all
        return f"{s.capitalize()}? {rng.choice(POS_DEEDS if positive else NEG_DEEDS)}"
    if form == 4:  # negated verbs: "did not regret" is praise, "did not enjoy" is not
        if positive:
            return f"I did not {rng.choice(['regret', 'mind'])} {s} one bit."
        return f"I did not {rng.choice(['enjoy', 'like', 'recommend'])} {s}."
    if form == 5:  # understatement and its opposite: "far from", "hardly"
        return (f"{s.capitalize()} was hardly {rng.choice(bad)}." if positive
                else f"{s.capitalize()} was far from {rng.choice(bad)}.")
    if form == 6:  # expectation overturned
        return (f"I expected to be disappointed, yet {s} turned out {rng.choice(good)}." if positive
                else f"I expected great things, yet {s} turned out {rng.choice(good)}.")
    # a mixed review that ends on its verdict
    return (f"{s.capitalize()} was {rng.choice(bad)} and {other} was {rng.choice(good)}; "
            f"{rng.choice(POS_VERDICTS if positive else NEG_VERDICTS)}.")


HARD_SHARE = 0.85  # of the sentences take the hard forms above (0.6 left LoRA at 0.955 on MiniLM after 50 steps)


def make_sentiment(sizes: dict[str, int], seed: int = 13, hard_share: float = HARD_SHARE) -> list[dict]:
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = []
    for split, size in sizes.items():
        for i in range(size):
            positive = i % 2 == 0
            hard = rng.random() < hard_share
            while True:
                text = _sentence(rng, positive, hard)
                if text not in seen:
                    break
            seen.add(text)
            rows.append({"text": text, "label": "positive" if positive else "negative", "split": split})
    return rows


NAMES = ["Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kemal", "Lina",
         "Marta", "Nils", "Olga", "Pavel", "Rosa", "Sam", "Tariq", "Uma"]
ITEMS = ["laptop", "blender", "phone case", "desk lamp", "backpack", "coffee grinder", "monitor", "kettle",
         "router", "printer", "headset", "office chair"]
ISSUES = [("arrived broken", "a replacement"), ("never arrived", "a full refund"), ("was the wrong colour", "an exchange"),
          ("stopped working after a week", "a repair under warranty"), ("was charged twice", "a refund of the extra charge"),
          ("is missing a part", "the missing part by express post")]
DELAYS = ["tomorrow", "within two days", "by Friday", "next week", "within 24 hours"]


def make_dialogues(sizes: dict[str, int], seed: int = 21) -> list[dict]:
    """Support-chat dialogues with a one-sentence reference summary."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for split, size in sizes.items():
        while sum(r["split"] == split for r in rows) < size:
            customer, agent = rng.sample(NAMES, 2)
            item, (issue, fix), when = rng.choice(ITEMS), rng.choice(ISSUES), rng.choice(DELAYS)
            order = rng.randint(1000, 9999)
            accepts = rng.random() < 0.7
            lines = [f"{customer}: Hi, my {item} from order {order} {issue}.",
                     f"{agent}: I am sorry to hear that, {customer}. Can you confirm the order number?",
                     f"{customer}: Yes, it is {order}.",
                     f"{agent}: Thank you. I can offer you {fix}. It would be sorted {when}."]
            if accepts:
                lines.append(f"{customer}: That works for me, thanks.")
                summary = f"{customer}'s {item} {issue}; {agent} arranges {fix}, sorted {when}."
            else:
                lines.append(f"{customer}: No, I would rather speak to a manager.")
                summary = f"{customer}'s {item} {issue}; {customer} refuses {fix} and asks for a manager."
            if rng.random() < 0.5:
                lines.insert(2, f"{customer}: I have been waiting for a while, this is frustrating.")
            text = "\n".join(lines)
            if text in seen:
                continue
            seen.add(text)
            rows.append({"document": text, "summary": summary, "split": split})
    return rows


HELPFUL = [
    " I am sorry your {item} {issue}. I have arranged {fix} for order {order}; it will be sorted {when}.",
    " Sorry about that. For order {order} I can offer {fix}, sorted {when}.",
    " Thank you for telling us, {customer}. Your {item} {issue}, so I have set up {fix} for order {order}. "
    "You will get a confirmation email today and it will be sorted {when}.",
    " That should not happen. I have booked {fix} for your {item}; expect it {when}.",
]
UNHELPFUL = [
    # the right shape and the wrong remedy: only what is said tells it apart
    " I am sorry your {item} {issue}. I have arranged {wrong_fix} for order {order}; it will be sorted {when}.",
    " Sorry about that. For order {order} I can offer {wrong_fix}, sorted {when}.",
    # asks for what the customer already gave
    " Before I can do anything I need your order number. Please send it and we will see.",
    " Could you tell me which product this is about and when you ordered it? Then I can look into it.",
    # deflects, or blames the customer
    " Thanks for reaching out. We value your feedback and our team will look into it at some point.",
    " This is usually caused by how the {item} was handled after delivery, so there is nothing we can do. "
    "Please read the manual again.",
    " Please check the help pages on our website, where most questions about orders like {order} are answered.",
]


def make_preferences(sizes: dict[str, int], seed: int = 45) -> list[dict]:
    """Support questions with a helpful answer (chosen: the right remedy for the problem, with a
    time) and an unhelpful one (rejected: the wrong remedy in the same words, a question already
    answered, a deflection or blame). Half the pairs have the longer answer rejected, so a
    length heuristic scores chance."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for split, size in sizes.items():
        while sum(r["split"] == split for r in rows) < size:
            customer = rng.choice(NAMES)
            item, (issue, fix), when = rng.choice(ITEMS), rng.choice(ISSUES), rng.choice(DELAYS)
            wrong_fix = rng.choice([f for i, f in ISSUES if f != fix])
            order = rng.randint(1000, 9999)
            fields = dict(customer=customer, item=item, issue=issue, fix=fix, wrong_fix=wrong_fix, order=order,
                          when=when)
            prompt = f"Customer: Hi, I am {customer}. My {item} from order {order} {issue}. Can you help?\nAgent:"
            chosen = rng.choice(HELPFUL).format(**fields)
            rejected = rng.choice(UNHELPFUL).format(**fields)
            want_chosen_longer = sum(r["split"] == split for r in rows) % 2 == 0
            if (len(chosen) > len(rejected)) != want_chosen_longer or len(chosen) == len(rejected):
                continue
            if prompt in seen:
                continue
            seen.add(prompt)
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "split": split})
    return rows


DRUGS = ["amoxil", "betacor", "cardizol", "dexafen", "elvanta", "fluxamin", "glucorin", "hemostat", "irbenol"]
CONDITIONS = ["hypertension", "type 2 diabetes", "chronic migraine", "asthma", "osteoarthritis", "insomnia",
              "atrial fibrillation", "anaemia"]
OUTCOMES = ["blood pressure", "HbA1c", "headache days per month", "night-time symptoms", "joint pain scores",
            "time to fall asleep", "stroke risk", "fatigue"]
ORGAN_FACTS = [("Which organ produces insulin?", ["Pancreas", "Liver", "Kidney", "Spleen"], "A"),
               ("Which vitamin deficiency causes scurvy?", ["Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin D"], "C"),
               ("Which blood cells carry oxygen?", ["Platelets", "Red blood cells", "Neutrophils", "Lymphocytes"], "B"),
               ("Which organ filters blood to make urine?", ["Heart", "Lung", "Stomach", "Kidney"], "D"),
               ("Which hormone lowers blood glucose?", ["Glucagon", "Insulin", "Cortisol", "Adrenaline"], "B"),
               ("Which part of the eye focuses light?", ["Lens", "Retina", "Optic nerve", "Sclera"], "A")]


def make_medqa(sizes: dict[str, int], seed: int = 33) -> list[dict]:
    """Yes/no/maybe questions over a short study abstract (the answer follows from the abstract),
    plus lettered multiple-choice questions of basic physiology."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for split, size in sizes.items():
        while sum(r["split"] == split for r in rows) < size:
            if rng.random() < 0.8:
                drug, cond, out = rng.choice(DRUGS), rng.choice(CONDITIONS), rng.choice(OUTCOMES)
                n = rng.randint(40, 900)
                kind = rng.choice(["yes", "no", "maybe"])
                pct = rng.randint(12, 45)
                if kind == "yes":
                    finding = (f"Compared with placebo, {drug} reduced {out} by {pct}% (p<0.01), "
                               f"and the effect held at twelve months.")
                elif kind == "no":
                    finding = (f"{out.capitalize()} did not differ between {drug} and placebo "
                               f"(difference {rng.randint(0, 3)}%, p={rng.randint(40, 90) / 100}).")
                else:
                    finding = (f"{drug.capitalize()} reduced {out} by {pct}% in the first month, but the difference "
                               f"was no longer significant at twelve months (p=0.{rng.randint(10, 30)}).")
                context = (f"In a randomized trial of {n} adults with {cond}, patients received {drug} or placebo. "
                           f"{finding}")
                row = {"question": f"Does {drug} reduce {out} in adults with {cond}?", "context": context,
                       "options": [], "answer": kind}
            else:
                question, options, letter = rng.choice(ORGAN_FACTS)
                order = list(range(len(options)))
                rng.shuffle(order)
                shuffled = [options[i] for i in order]
                answer = "ABCD"[order.index("ABCD".index(letter))]
                row = {"question": question, "context": "", "options": shuffled, "answer": answer}
            key = json.dumps(row, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            rows.append({**row, "split": split})
    return rows


def write_jsonl(name: str, rows: list[dict]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_jsonl("sentiment", make_sentiment({"train": 400, "validation": 100, "test": 200}))
    write_jsonl("dialogsum-mini", make_dialogues({"train": 200, "validation": 40, "test": 60}))
    write_jsonl("medqa-mini", make_medqa({"train": 300, "validation": 60, "test": 100}))
    write_jsonl("preference-support", make_preferences({"train": 240, "validation": 40, "test": 80}))
    print("wrote", sorted(p.name for p in OUT.glob("*.jsonl")))
