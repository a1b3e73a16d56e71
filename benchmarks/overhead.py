"""Per-trial overhead of the sweep: everything a trial costs outside its training and evaluation
steps (process fork, method application, Trainer setup, record writing), on a tiny model.

    python benchmarks/overhead.py [--trials 10] [--isolation process|inline]

Prints the import cost of the training stack (paid once per sweep, in the sweep process), each
trial's overhead, and the ratio of overhead to the trial's useful work."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """\
name: overhead
models: [{{source: "builtin:tiny-bert", max_length: 32}}]
tasks: [{{name: sentiment, kind: classification, data: {{builtin: sentiment, train_size: 200, test_size: 100}}}}]
methods: [{{name: lora}}, {{name: bitfit}}]
search: {{trials_per_cell: {per_cell}, strategy: none}}
training: {{max_steps: 20, batch_size: 16}}
runner: {{isolation: {isolation}}}
"""


def import_cost_s() -> float:
    code = ("import time; t=time.perf_counter(); import transformers, peft, bitsandbytes, evaluate, sklearn.metrics; "
            "from transformers import Trainer; print(time.perf_counter()-t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--isolation", choices=["process", "inline"], default="process")
    args = parser.parse_args()
    from harness.cli import main as harness_main
    from harness.records.store import FileRecordStore

    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "overhead.yaml"
        suite.write_text(SUITE.format(per_cell=args.trials // 2, isolation=args.isolation))
        t0 = time.perf_counter()
        code = harness_main(["run", str(suite), "--quiet", "--results", f"{tmp}/results", "--reports", f"{tmp}/reports"])
        wall = time.perf_counter() - t0
        assert code == 0
        records = FileRecordStore(Path(tmp) / "results" / "overhead").load_all()
    overheads = [r.timing.overhead_s for r in records]
    useful = [r.timing.train_s + r.timing.eval_s for r in records]
    print(f"import of transformers+peft+bitsandbytes+evaluate (once per sweep): {import_cost_s():.1f} s")
    print(f"sweep wall time: {wall:.1f} s for {len(records)} trials ({args.isolation} isolation)")
    print("trial  method  status    total_s  train_s  eval_s  overhead_s")
    for r in sorted(records, key=lambda r: (r.method, r.trial_number)):
        print(f"{r.trial_number:5d}  {r.method:6s}  {r.status:8s}  {r.timing.total_s:7.2f}  {r.timing.train_s:7.2f}"
              f"  {r.timing.eval_s:6.2f}  {r.timing.overhead_s:10.2f}")
    print(f"overhead per trial: mean {statistics.mean(overheads):.2f} s, median {statistics.median(overheads):.2f} s, "
          f"max {max(overheads):.2f} s")
    print(f"overhead / (train+eval): {sum(overheads) / sum(useful):.2f}")


if __name__ == "__main__":
    main()
