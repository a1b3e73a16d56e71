"""Seeds until decided against a fixed 10, on real data: rt-polarity (../shared/data), MiniLM-L6,
2,000 training sentences, a 500-sentence validation split and a 1,000-sentence test split (disjoint
slices of one seeded shuffle), batch 16, max length 64; full fine-tuning, LoRA, BitFit and LayerNorm
tuning, 2 search trials each (the setup of benchmarks/honest_selection.py). The suite runs with
`confirm: {seeds: auto, min_seeds: 3, max_seeds: 10}`; its results are copied aside, then the same
command with `confirm: {seeds: 10}` resumes it (confirm may change on a resume): the search and the
seeds auto ran are kept, the missing seeds run. Prints both answers, the verdicts and the seeds each
method spent under each rule.

    python benchmarks/seeds_auto.py [--steps 60] [--trials 2]"""

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
name: {name}
models: [{{source: "builtin:minilm-l6", max_length: 64}}]
tasks: [{{name: rt-polarity, kind: classification, data: {{files: {files}}}}}]
methods: [{{name: full}}, {{name: lora}}, {{name: bitfit}}, {{name: ln_tuning}}]
search: {{trials_per_cell: {trials}, seed: 0, strategy: none}}
confirm: {confirm}
training: {{max_steps: {steps}, batch_size: 16, eval_batch_size: 100}}
"""


def more(m: dict) -> str:
    return f" (+{m['more_seeds']} seeds would likely decide it)" if m["more_seeds"] else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no shared data at {DATA}")
    from harness.api import load
    from harness.cli import main as harness
    from harness.records.store import FileRecordStore

    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="harness-seeds-"))
    files = rt_polarity(tmp, train=2000, validation=500, test=1000)
    suite, results = tmp / "rt-seeds.yaml", tmp / "results" / "rt-seeds"
    spent = {}
    for rule, confirm in (("auto", "{seeds: auto, min_seeds: 3, max_seeds: 10}"), ("fixed 10", "{seeds: 10}")):
        suite.write_text(SUITE.format(name="rt-seeds", files=json.dumps(files), trials=args.trials, steps=args.steps,
                                      confirm=confirm))
        t0 = time.perf_counter()
        code = harness(["run", str(suite), "--quiet", "--results", str(tmp / "results"),
                        "--reports", str(tmp / "reports")])
        records = FileRecordStore(results).load_all()
        print(f"\n== {rule}: confirm {confirm}; exit {code}, {time.perf_counter() - t0:.0f} s")
        show(load(results).decision())
        spent[rule] = {}
        for r in records:
            if r.phase == "confirm" and r.status == "complete":
                spent[rule].setdefault(r.method, []).append(r)
        for method, runs in spent[rule].items():
            last = max(runs, key=lambda r: r.seed)
            why = (last.confirmation or {}).get("why", "")
            print(f"  {method}: {len(runs)} seeds{f'; the last because: {why}' if rule == 'auto' else ''}")
        if rule == "auto":
            shutil.copytree(results, tmp / "results" / "rt-seeds-auto")  # what auto alone ran, kept aside
    total = {rule: sum(len(v) for v in by.values()) for rule, by in spent.items()}
    print(f"\nconfirmation runs: auto {total['auto']}, fixed 10 {total['fixed 10']}")
    print(f"results in {tmp} (rt-seeds-auto: the auto run alone)")


def show(decided: list[dict]) -> None:
    for part in decided:
        print(f"answer: {part['answer']}")
        for m in part["methods"]:
            low, high = m["interval"]
            interval = f"[{low:+.4f}, {high:+.4f}] at {m['level']:.1%}" if low is not None else ""
            diff = m["diff_vs_best"] if m["diff_vs_best"] is not None else float("nan")
            print(f"  {m['method']:10} {m['verdict'] or '-':10} test acc {m['objective']:.4f} over {m['seeds']:2d} "
                  f"seeds; vs best {diff:+.4f} {interval}{more(m)}")


if __name__ == "__main__":
    main()
