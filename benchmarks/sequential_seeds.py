"""The seed rule of `confirm.seeds: auto` against fixed seeds, by simulation (harness/sequential.py):
two methods on paired synthetic scores with a known true difference, each truth run many times.
Prints, per truth, how often each rule ends with each verdict about the second method (the wrong
ones marked), and the mean seeds both methods spent.

    python benchmarks/sequential_seeds.py [--runs 4000] [--sd 0.01] [--tolerance 0.01]"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.sequential import level_at, looks, simulate  # noqa: E402

WRONG = {"equal": ("worse", "better"), "at the tolerance": ("equivalent", "better"),
         "worse": ("equivalent", "better"), "far worse": ("equivalent", "better"), "better": ("equivalent", "worse"),
         "half the tolerance": ("better",)}  # worse, and within the tolerance: both true


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--sd", type=float, default=0.01, help="spread of the paired difference per seed")
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args()
    t, sd = args.tolerance, args.sd
    truths = {"equal": 0.0, "half the tolerance": -t / 2, "at the tolerance": -t, "worse": -3 * t,
              "far worse": -10 * t, "better": 3 * t}
    plan_looks = looks(3, 10, 3)
    print(f"paired spread {sd:g} per seed, tolerance ±{t:g}, {args.runs} runs per truth")
    print(f"auto: looks at {plan_looks} seeds, each read at {level_at(len(plan_looks)):.1%} (Bonferroni); "
          f"fixed: 10 seeds read once at 90%")
    print(f"{'truth (b - a)':<28} {'rule':<6} {'equivalent':>10} {'worse':>7} {'better':>7} {'undecided':>10} "
          f"{'wrong':>7} {'seeds':>6}")
    for name, truth in truths.items():
        for rule in ("fixed", "auto"):
            claims, spent = simulate(truth, sd, t, rule, args.runs, seed=11)
            share = Counter(claims)
            wrong = sum(share[w] for w in WRONG[name]) / args.runs
            cols = " ".join(f"{share[w] / args.runs:>{len(w) if len(w) > 6 else 7}.1%}"
                            for w in ("equivalent", "worse", "better", "undecided"))
            print(f"{name + f' ({truth:+.3f})':<28} {rule:<6} {cols} {wrong:>7.1%} {sum(spent) / len(spent):>6.1f}")
    print("wrong: a verdict the truth contradicts (at most 5% per side by design); seeds: both methods together "
          "(fixed: 20)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
