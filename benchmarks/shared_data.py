"""Short measurement runs on the real public data sets beside the checkout (../shared/data):
rt-polarity (sentiment, MiniLM), PubMedQA (medical QA, SmolLM2) and DialogSum (summarization,
SmolLM2). The data stay where they are; this script only reshapes them into JSONL files in a
temporary folder, as a user would prepare their own files, and writes suites that point there.

    python benchmarks/shared_data.py [--only sentiment|medqa|summarize] [--steps 40]"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

DATA = Path(os.environ.get("HARNESS_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def write(path: Path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


def rt_polarity(out: Path, train: int = 2000, validation: int = 200, test: int = 1000) -> dict:
    """Disjoint train / validation / test slices of one seeded shuffle (10,662 sentences in all)."""
    rows = []
    for label in ("pos", "neg"):
        text = (DATA / "rt-polarity" / f"rt-polarity.{label}").read_bytes().decode("latin-1")
        rows += [{"text": t.strip(), "label": "positive" if label == "pos" else "negative"} for t in text.splitlines() if t.strip()]
    random.Random(0).shuffle(rows)
    return {"train": write(out / "rt-train.jsonl", rows[:train]),
            "validation": write(out / "rt-val.jsonl", rows[train:train + validation]),
            "test": write(out / "rt-test.jsonl", rows[-test:])}


def pubmedqa(out: Path) -> tuple[dict, float]:
    records = json.loads((DATA / "pubmedqa" / "ori_pqal.json").read_text())
    test_ids = set(json.loads((DATA / "pubmedqa" / "test_ground_truth.json").read_text()))
    row = lambda pmid, r: {"question": r["QUESTION"], "context": " ".join(r["CONTEXTS"]), "answer": r["final_decision"]}
    train = [row(k, r) for k, r in records.items() if k not in test_ids]
    test = [row(k, r) for k, r in records.items() if k in test_ids]
    majority = Counter(r["answer"] for r in test).most_common(1)[0][1] / len(test)
    return {"train": write(out / "pq-train.jsonl", train[:-50]), "validation": write(out / "pq-val.jsonl", train[-50:]),
            "test": write(out / "pq-test.jsonl", test)}, majority


def dialogsum(out: Path) -> dict:
    dev = [json.loads(l) for l in open(DATA / "dialogsum" / "dialogsum.dev.jsonl", encoding="utf-8")]
    test = [json.loads(l) for l in open(DATA / "dialogsum" / "dialogsum.test.jsonl", encoding="utf-8")]
    to_row = lambda r, key: {"document": r["dialogue"], "summary": r[key]}
    return {"train": write(out / "ds-train.jsonl", [to_row(r, "summary") for r in dev[:450]]),
            "validation": write(out / "ds-val.jsonl", [to_row(r, "summary") for r in dev[450:]]),
            "test": write(out / "ds-test.jsonl", [to_row(r, "summary1") for r in test])}


SUITE = """\
name: {name}
models: [{{source: "{model}", max_length: {max_length}}}]
tasks: [{{name: {task}, kind: {kind}, data: {{files: {files}, train_size: {train}, test_size: {test}}}}}]
methods: [{methods}]
search: {{trials_per_cell: 1, strategy: none}}
training: {{max_steps: {steps}, batch_size: {batch}, eval_batch_size: 16}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["sentiment", "medqa", "summarize"])
    parser.add_argument("--steps", type=int, default=10, help="train steps for the SmolLM2 runs (~150 tokens/s here)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no shared data at {DATA}")
    from harness.cli import main as harness

    tmp = Path(tempfile.mkdtemp(prefix="harness-shared-"))
    runs = []
    if args.only in (None, "sentiment"):
        runs.append(("rt-polarity", dict(name="real-sentiment", model="builtin:minilm-l6", max_length=64, task="rt-polarity",
                                          kind="classification", files=json.dumps(rt_polarity(tmp)), train=2000, test=1000,
                                          methods="{name: lora, params: {learning_rate: 0.005}}, {name: full}", steps=40, batch=16)))
    if args.only in (None, "medqa"):
        files, majority = pubmedqa(tmp)
        print(f"PubMedQA test split: {majority:.3f} majority-class accuracy (the paper reports 55.2% for its reasoning-required setting)")
        runs.append(("pubmedqa", dict(name="real-medqa", model="builtin:smollm2-135m", max_length=256, task="pubmedqa", kind="qa",
                                       files=json.dumps(files), train=450, test=60,
                                       methods="{name: lora, params: {learning_rate: 0.001}}", steps=args.steps, batch=4)))
    if args.only in (None, "summarize"):
        runs.append(("dialogsum", dict(name="real-summarize", model="builtin:smollm2-135m", max_length=256, task="dialogsum",
                                        kind="summarization", files=json.dumps(dialogsum(tmp)), train=450, test=30,
                                        methods="{name: lora, params: {learning_rate: 0.001}}", steps=args.steps, batch=4)))
    for label, fields in runs:
        suite = tmp / f"{fields['name']}.yaml"
        suite.write_text(SUITE.format(**fields))
        print(f"\n=== {label}: {suite}")
        harness(["run", str(suite), "--quiet", "--results", str(tmp / "results"), "--reports", str(tmp / "reports")])


if __name__ == "__main__":
    main()
