"""Selection on validation, reporting on test, on real data: rt-polarity (../shared/data), MiniLM-L6,
2,000 training sentences, a 500-sentence validation split and a 500-sentence test split (disjoint
slices of one seeded shuffle), batch 16, max length 64, 150 steps, 4 trials each for LoRA and full
fine-tuning (trial 0: the method's defaults), no confirmation seeds. Prints every trial's validation
and test accuracy, which trial the harness chose (on validation) and its test accuracy, then what a
plain PyTorch loop (AdamW, linear schedule, the same data, batch, steps and the method's default
configuration) reaches on the same test split.

    python benchmarks/honest_selection.py [--steps 150] [--trials 4]"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import DATA, rt_polarity  # noqa: E402

SUITE = """\
name: honest-rt
models: [{{source: "builtin:minilm-l6", max_length: 64}}]
tasks: [{{name: rt-polarity, kind: classification, data: {{files: {files}}}}}]
methods: [{{name: lora}}, {{name: full}}]
search: {{trials_per_cell: {trials}, seed: 0, strategy: none}}
training: {{max_steps: {steps}, batch_size: 16, eval_batch_size: 100}}
"""


def plain_loop(method_name: str, files: dict, steps: int, seed: int = 0) -> float:
    """The plainest training of the method's default configuration; test accuracy."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, get_scheduler

    from harness.methods import METHODS, ApplyContext
    from harness.models import BUILTIN_MODELS

    torch.manual_seed(seed)
    source = str(BUILTIN_MODELS.get("minilm-l6").locate())
    tok = AutoTokenizer.from_pretrained(source)
    labels = ["negative", "positive"]
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    method = METHODS.get(method_name)
    model = method.build(model, method.params(), ApplyContext("SEQ_CLS", ("classifier",), "bert", steps))

    def load(path):
        rows = [json.loads(line) for line in open(path)]
        enc = [dict(tok(r["text"], truncation=True, max_length=64), labels=labels.index(r["label"])) for r in rows]
        return enc

    collate = DataCollatorWithPadding(tok)
    train = DataLoader(load(files["train"]), batch_size=16, shuffle=True, collate_fn=collate,
                       generator=torch.Generator().manual_seed(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=method.training["learning_rate"])
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=steps)
    model.train()
    step = 0
    while step < steps:
        for batch in train:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step == steps:
                break
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in DataLoader(load(files["test"]), batch_size=100, collate_fn=collate):
            correct += int((model(**batch).logits.argmax(-1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no shared data at {DATA}")
    from harness.cli import main as harness
    from harness.records.select import best_search_trial
    from harness.records.store import FileRecordStore

    tmp = Path(tempfile.mkdtemp(prefix="harness-honest-"))
    files = rt_polarity(tmp, train=2000, validation=500, test=500)
    suite = tmp / "honest-rt.yaml"
    suite.write_text(SUITE.format(files=json.dumps(files), trials=args.trials, steps=args.steps))
    t0 = time.perf_counter()
    code = harness(["run", str(suite), "--quiet", "--results", str(tmp / "results"), "--reports", str(tmp / "reports")])
    sweep_s = time.perf_counter() - t0
    records = FileRecordStore(tmp / "results" / "honest-rt").load_all()
    print(f"\nsweep: exit {code}, {sweep_s:.0f} s; results in {tmp}")
    print(f"{'method':8} {'trial':>5} {'learning rate':>13} {'other':>10} {'val acc':>8} {'test acc':>8}")
    chosen = {}
    for method in ("lora", "full", "none", "trivial"):
        rs = sorted((r for r in records if r.method == method), key=lambda r: r.trial_number)
        best = best_search_trial(rs)
        chosen[method] = best
        for r in rs:
            other = f"r={r.params['r']}" if "r" in r.params else ""
            lr = r.params.get("learning_rate")
            mark = "  <- chosen on validation" if best is not None and r.trial_number == best.trial_number and r.method in ("lora", "full") else ""
            print(f"{method:8} {r.trial_number:5d} {lr if lr else 0:13.3g} {other:>10} "
                  f"{r.validation_metrics.get('accuracy', float('nan')):8.3f} {r.metrics.get('accuracy', float('nan')):8.3f}{mark}")
    print("\nplain PyTorch loop, each method's default configuration, same data and steps:")
    for method in ("lora", "full"):
        t1 = time.perf_counter()
        acc = plain_loop(method, files, args.steps)
        print(f"{method:8} plain loop test acc {acc:.3f} ({time.perf_counter() - t1:.0f} s); harness chose trial "
              f"{chosen[method].trial_number}: test acc {chosen[method].metrics['accuracy']:.3f}")


if __name__ == "__main__":
    main()
