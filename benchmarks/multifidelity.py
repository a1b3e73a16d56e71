"""The same question answered with and without multi-fidelity search: rt-polarity (../shared/data),
MiniLM-L6, 3 methods x 6 trials x 100 steps (batch 16, max length 64), the validation-best
configuration of each method confirmed with 2 fresh seeds and reported on test. Run 1 trains every
trial to the end (strategy none); then each of --strategies (rungs at 10 and 30 steps, reduction
factor 3): asha (Optuna's SuccessiveHalvingPruner, each trial judged as it reaches a rung) and sha
(synchronous successive halving, runner/halving.py: each rung judged together). Prints the compute each
spent (search train steps and seconds, whole-run wall time), each run's leaderboard, and whether
the winner is the same, or within the full-budget winner's confidence interval.

    python benchmarks/multifidelity.py [--trials 6] [--steps 100] [--methods lora,bitfit,full] [--strategies asha,sha]"""

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
name: mf-{strategy}
models: [{{source: "builtin:minilm-l6", max_length: 64}}]
tasks: [{{name: rt-polarity, kind: classification, data: {{files: {files}}}}}]
methods: [{methods}]
search: {{trials_per_cell: {trials}, seed: 0, strategy: {strategy}{rung_args}}}
confirm: {{seeds: 2}}
training: {{max_steps: {steps}, batch_size: 16, eval_batch_size: 100}}
references: false
"""


def run(tmp: Path, files: dict, strategy: str, args) -> dict:
    from harness.cli import main as harness
    from harness.records.store import FileRecordStore
    from harness.report.compute import compute_table
    from harness.report.leaderboard import leaderboard

    rung_args = f", min_steps: {args.min_steps}, reduction_factor: 3" if strategy != "none" else ""
    methods = ", ".join(f"{{name: {m}}}" for m in args.methods.split(","))
    suite = tmp / f"mf-{strategy}.yaml"
    suite.write_text(SUITE.format(strategy=strategy, rung_args=rung_args, files=json.dumps(files), methods=methods,
                                  trials=args.trials, steps=args.steps))
    t0 = time.perf_counter()
    code = harness(["run", str(suite), "--quiet", "--results", str(tmp / "results"), "--reports", str(tmp / "reports")])
    wall = time.perf_counter() - t0
    records = FileRecordStore(tmp / "results" / f"mf-{strategy}").load_all()
    compute = compute_table(records)
    board = leaderboard(records)
    search = [r for r in records if r.phase == "search"]
    return {"strategy": strategy, "exit": code, "wall_s": wall, "compute": compute, "board": board,
            "trials_s": sum(r.timing.total_s for r in records),
            "search_s": sum(r.timing.total_s for r in search),
            "pruned": sum(r.status == "pruned" for r in search)}


def winner(board):
    ranked = board[board["rank"] == 1]
    return ranked.iloc[0] if len(ranked) else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--min-steps", type=int, default=10)
    parser.add_argument("--methods", default="lora,bitfit,full")
    parser.add_argument("--strategies", default="asha,sha", help="compared with none (the full budget), each in turn")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no shared data at {DATA}")
    tmp = Path(tempfile.mkdtemp(prefix="harness-mf-"))
    files = rt_polarity(tmp, train=2000, validation=300, test=1000)
    strategies = ["none", *(s for s in args.strategies.split(",") if s != "none")]
    runs = [run(tmp, files, strategy, args) for strategy in strategies]
    print(f"\nresults in {tmp}")
    for r in runs:
        c = r["compute"]
        print(f"\n=== strategy {r['strategy']}: exit {r['exit']}, whole run {r['wall_s']:.0f} s wall, "
              f"search trials {r['search_s']:.0f} s, all trials {r['trials_s']:.0f} s")
        for row in c.itertuples():
            print(f"  {row.method:8} trials {row.trials} runs {row.runs} pruned {row.pruned}  train steps {row.steps:5d} / {row.full_steps} "
                  f"({row.step_share:.0%})  train {row.train_s:6.1f} s  in-loop validation {row.validation_s:5.1f} s")
        for row in r["board"].itertuples():
            print(f"  rank {row.rank!s:>4} {row.method:8} test accuracy {row.objective:.4f} "
                  f"[{row.ci_low:.4f}, {row.ci_high:.4f}] (trial {row.trial}, {row.seeds} seeds)")
    full = runs[0]
    w_full = winner(full["board"])
    for other in runs[1:]:
        name = other["strategy"]
        if other["compute"].empty or full["compute"].empty:
            print(f"\n{name}: no search records to compare (exit {other['exit']})")
            continue
        steps = (other["compute"]["steps"].sum(), full["compute"]["steps"].sum())
        print(f"\ncompute, {name} / full budget: search train steps {steps[0]} / {steps[1]} = "
              f"{steps[0] / steps[1]:.2f} (repeated steps included: {other['compute']['repeated_steps'].sum()}); "
              f"search trial seconds {other['search_s'] / full['search_s']:.2f}; "
              f"whole run wall {other['wall_s'] / full['wall_s']:.2f}")
        w_other = winner(other["board"])
        if w_full is None or w_other is None:
            print("no winner in one of the runs")
            continue
        same = w_full.method == w_other.method
        inside = w_full.ci_low <= w_other.objective <= w_full.ci_high
        print(f"winner, full budget: {w_full.method} (trial {w_full.trial}) {w_full.objective:.4f} "
              f"[{w_full.ci_low:.4f}, {w_full.ci_high:.4f}]; {name}: {w_other.method} (trial {w_other.trial}) "
              f"{w_other.objective:.4f} [{w_other.ci_low:.4f}, {w_other.ci_high:.4f}] -> "
              f"{'same winner' if same else 'another winner'}, {'inside' if inside else 'outside'} the full-budget CI")

if __name__ == "__main__":
    main()
