"""False alarms and detection of `harness compare` on nightly runs, from measured spreads.

    python benchmarks/nightly_noise.py --run 8 [--history DIR] [--sims 20000]

--run N runs suites/nightly.yaml N times into DIR/night-01.. (about 2-3 minutes each here); without
it, the nights already in DIR are read. From them, per cell and metric: the spread between seeds of
one night (pooled) and the spread of the night means between nights. Nights are then simulated from
those spreads (a night effect shared by its seeds, plus seed noise) and judged by the same rule
`harness compare` applies (harness/report/verdicts.py, with the nightly suite's tolerances):
- false alarms: two unchanged nights, how often any of a cell's 4 metrics is called regressed;
- detection: a candidate night with 5 points less accuracy, 10% more memory, 30% fewer tokens/s
  (and so 1/0.7 the train time), how often that metric is called regressed.
The real consecutive nights are compared too, with `harness compare` itself."""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DROPS = {"quality": ("-5 points of accuracy", lambda v: v - 0.05),
         "peak_memory_mib": ("+10% memory", lambda v: v * 1.10),
         "train_tokens_per_s": ("-30% tokens/s", lambda v: v * 0.70),
         "train_s": ("+43% train time (30% fewer tokens/s)", lambda v: v / 0.70)}


def run_nights(history: Path, n: int) -> None:
    history.mkdir(parents=True, exist_ok=True)
    have = len([p for p in history.iterdir() if p.is_dir()])
    for i in range(have + 1, have + n + 1):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness.cli", "run", str(REPO / "suites" / "nightly.yaml"), "--quiet",
                        "--results", str(history / f"night-{i:02d}"), "--reports", str(history / f"reports-{i:02d}")],
                       check=False, stdout=subprocess.DEVNULL)
        print(f"night {i}: {time.perf_counter() - t0:.0f} s", flush=True)


def spreads(history: Path):
    """cell -> metric -> (grand mean, within-night seed SD, night-effect SD, seeds per night, nights)."""
    from harness.records.store import FileRecordStore
    from harness.report.compare import METRICS, cell_samples, results_folder

    nights = []
    for night in sorted(p for p in history.iterdir() if p.is_dir() and p.name.startswith("night-")):
        nights.append(cell_samples(FileRecordStore(results_folder(night)).load_all()))
    out = {}
    for cell in sorted(set.intersection(*(set(n) for n in nights))):
        out[cell] = {}
        for metric in METRICS:
            per_night = [[metric.values(r) for r in n[cell]] for n in nights]
            k = min(len(v) for v in per_night)
            means = [statistics.fmean(v) for v in per_night]
            within = math.sqrt(statistics.fmean([statistics.variance(v) for v in per_night])) if k > 1 else 0.0
            between = statistics.stdev(means) if len(means) > 1 else 0.0
            night_sd = math.sqrt(max(between ** 2 - within ** 2 / max(k, 1), 0.0))
            out[cell][metric.name] = (statistics.fmean(means), within, night_sd, k, len(nights))
    return out, len(nights)


def simulate(spread, metric, tol, sims: int, drop=None, seed: int = 0) -> float:
    """Share of simulated candidate nights that compare calls regressed for this metric."""
    from harness.report.verdicts import judge, side

    mean, within, night_sd, k, _ = spread
    rng = random.Random(seed)
    hits = 0
    for _ in range(sims):
        nights = []
        for changed in (False, True):
            centre = mean + rng.gauss(0, night_sd)
            values = [centre + rng.gauss(0, within) for _ in range(k)]
            nights.append([drop(v) for v in values] if (changed and drop) else values)
        higher = metric.higher_is_better if metric.higher_is_better is not None else True
        verdict, *_ = judge(side(nights[0]), side(nights[1]), getattr(tol, metric.tolerance), metric.relative, higher)
        hits += verdict == "regressed"
    return hits / sims


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", default=str(REPO / "results" / "nightly-noise"))
    parser.add_argument("--run", type=int, default=0, help="run the nightly suite this many more times first")
    parser.add_argument("--sims", type=int, default=20000)
    args = parser.parse_args()
    history = Path(args.history)
    if args.run:
        run_nights(history, args.run)
    from harness.report.compare import METRICS, compare, results_folder, tolerances
    from harness.records.store import FileRecordStore
    from harness.report.verdicts import ALPHA, LEVEL

    data, n_nights = spreads(history)
    first = results_folder(sorted(p for p in history.iterdir() if p.name.startswith("night-"))[0])
    tol = tolerances(first, {})
    print(f"{n_nights} nights; intervals at {LEVEL:.1%} two-sided (alpha {ALPHA:.4f} per metric, one-sided, "
          f"Bonferroni over {len(METRICS)} metrics for <= 1% false alarms per cell-night); tolerances {tol}")
    print(f"{'cell':32} {'metric':20} {'mean':>10} {'seed SD':>9} {'night SD':>9} {'false alarm':>11} {'detection':>10}  drop")
    for cell, metrics in data.items():
        any_alarm_rate = 1.0
        for metric in METRICS:
            spread = data[cell][metric.name]
            fa = simulate(spread, metric, tol, args.sims)
            label, drop = DROPS[metric.name]
            det = simulate(spread, metric, tol, args.sims, drop=drop, seed=1)
            any_alarm_rate *= 1 - fa
            print(f"{cell:32} {metric.name:20} {spread[0]:10.4g} {spread[1]:9.3g} {spread[2]:9.3g} {fa:11.4f} "
                  f"{det:10.3f}  {label}")
        print(f"{cell:32} {'any metric':20} {'':>10} {'':>9} {'':>9} {1 - any_alarm_rate:11.4f}")
    nights = sorted(p for p in history.iterdir() if p.is_dir() and p.name.startswith("night-"))
    alarms = total = 0
    for a, b in zip(nights, nights[1:]):
        ba, bb = results_folder(a), results_folder(b)
        verdicts = compare(FileRecordStore(ba).load_all(), FileRecordStore(bb).load_all(), tolerances(ba, {}))
        flagged = {v.cell for v in verdicts if v.is_failure}
        cells = {v.cell for v in verdicts}
        alarms += len(flagged)
        total += len(cells)
        print(f"real: {a.name} -> {b.name}: {len(flagged)} of {len(cells)} cells flagged "
              f"{sorted(f'{v.cell}/{v.metric}' for v in verdicts if v.is_failure)}")
    if total:
        print(f"real consecutive nights: {alarms} false alarms in {total} cell-nights")


if __name__ == "__main__":
    main()
