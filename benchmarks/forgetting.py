"""Learning vs forgetting on real data: SmolLM2-135M summarizing DialogSum (../shared/data; 450 dev
dialogues to train on, 50 to validate, the official test split's first 40), full fine-tuning, LoRA,
IA3, LayerNorm tuning and prompt tuning, each at its default learning rate and at 5x it, one seed,
the same steps and batch. Prints per method: test ROUGE-L with its standard error, forgetting (NLL on
the built-in general text after minus before, nats/token, 95% interval over documents), KL drift on
the validation prompts, and the seconds retention took against the run.

    python benchmarks/forgetting.py [--steps 20] [--share 0.15]"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import DATA, dialogsum  # noqa: E402

METHODS = (("full", 5e-5), ("lora", 3e-3), ("ia3", 1e-2), ("ln_tuning", 5e-3), ("prompt_tuning", 3e-2))

SUITE = """\
name: forgetting
models: [{{source: "builtin:smollm2-135m", max_length: 192}}]
tasks: [{{name: dialogsum, kind: summarization, data: {{files: {files}, test_size: 40}}}}]
methods:
{methods}
search: {{trials_per_cell: 1, seed: 0, strategy: none}}
training: {{max_steps: {steps}, batch_size: 8, eval_batch_size: 20}}
retention: {{max_share: {share}, min_documents: 48, drift_examples: 32}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.15)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no shared data at {DATA}")
    from harness.cli import main as harness
    from harness.records.store import FileRecordStore

    tmp = Path(tempfile.mkdtemp(prefix="harness-forgetting-"))
    files = dialogsum(tmp)
    entries = []
    for name, lr in METHODS:
        entries.append(f"  - {{name: {name}, params: {{learning_rate: {lr:.1e}}}}}")
        entries.append(f"  - {{name: {name}, label: {name}-5x, params: {{learning_rate: {5 * lr:.1e}}}}}")
    suite = tmp / "forgetting.yaml"
    suite.write_text(SUITE.format(files=json.dumps(files), methods="\n".join(entries), steps=args.steps,
                                  share=args.share))
    t0 = time.perf_counter()
    code = harness(["run", str(suite), "--quiet", "--results", str(tmp / "results"), "--reports", str(tmp / "reports")])
    print(f"harness run: exit {code}, {time.perf_counter() - t0:.0f} s; results in {tmp / 'results'}")
    records = [r for r in FileRecordStore(tmp / "results" / "forgetting").load_all() if r.status == "complete"]
    print("| method | lr | test ROUGE-L | forgetting, nats/token [95% CI] | KL drift, nats/token | docs | "
          "retention s / run s |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: r.method):
        ret = r.retention
        if ret is None or ret.forgetting is None:
            print(f"| {r.method} | - | {r.metrics.get('rougeL', float('nan')):.3f} | - | - | - | - |")
            continue
        half = 1.96 * (ret.forgetting_se or 0.0)
        print(f"| {r.method} | {r.params.get('learning_rate'):g} | {r.metrics['rougeL']:.3f} "
              f"± {r.metric_errors.get('rougeL', float('nan')):.3f} | {ret.forgetting:+.3f} "
              f"[{ret.forgetting - half:+.3f}, {ret.forgetting + half:+.3f}] | {ret.drift:.3f} ± "
              f"{ret.drift_se or 0:.3f} | {ret.documents} | {r.timing.retention_s:.0f} / {r.timing.total_s:.0f} |")


if __name__ == "__main__":
    main()
