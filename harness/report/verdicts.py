"""The verdict rule `harness compare` applies to one metric of one cell, as plain arithmetic so the
false-alarm benchmark (benchmarks/nightly_noise.py) simulates exactly what compare does.

Threshold = the larger of the tolerance (the suite's `compare:` section) and the noise estimate:
the half-width of an interval for the difference of the two means at the level below, Welch's t
with Welch-Satterthwaite degrees of freedom where both sides have seeds; where a side has one run,
its standard error is the test set's own sampling error (binomial for accuracy, bootstrap over
examples for F1 and ROUGE), for quality only. A change beyond the threshold in the bad direction
is a regression.

Level: a cell-night is judged on 4 metrics, and a nightly job should raise at most 1% false alarms
per cell-night over all of them: Bonferroni over the 4, one-sided (only a regression raises an
alarm), gives alpha = 0.0025 per metric, so each interval is two-sided at 99.5%."""

from __future__ import annotations

import math
from dataclasses import dataclass

CELL_NIGHT_FALSE_ALARMS = 0.01
METRICS_PER_CELL = 4
ALPHA = CELL_NIGHT_FALSE_ALARMS / METRICS_PER_CELL  # per metric, one-sided
LEVEL = 1 - 2 * ALPHA  # of the two-sided interval whose half-width is the noise threshold


@dataclass(frozen=True)
class Side:
    mean: float
    se: float  # standard error of the mean (0 where unknown)
    df: float  # degrees of freedom behind se (inf for a sampling-error formula)
    n: int

    @property
    def interval(self) -> tuple[float, float]:
        half = _quantile(self.df) * self.se if self.se else 0.0
        return self.mean - half, self.mean + half


def side(values: list[float], sampling_se: float | None = None) -> Side:
    """One night's values of a metric: seeds give a standard error; a single run may bring its
    test-set sampling error instead."""
    n = len(values)
    mean = sum(values) / n
    if n >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        return Side(mean, sd / math.sqrt(n), n - 1, n)
    if sampling_se is not None and math.isfinite(sampling_se):
        return Side(mean, sampling_se, math.inf, n)
    return Side(mean, 0.0, math.inf, n)


def _quantile(df: float) -> float:
    from scipy import stats

    q = 1 - (1 - LEVEL) / 2
    return float(stats.norm.ppf(q) if math.isinf(df) else stats.t.ppf(q, df))


def noise(base: Side, cand: Side) -> float:
    """Half-width of the LEVEL interval of cand.mean - base.mean (Welch)."""
    vb, vc = base.se ** 2, cand.se ** 2
    if vb + vc == 0:
        return 0.0
    parts = [v ** 2 / df for v, df in ((vb, base.df), (vc, cand.df)) if v and not math.isinf(df)]
    df = (vb + vc) ** 2 / sum(parts) if parts else math.inf
    return _quantile(df) * math.sqrt(vb + vc)


def judge(base: Side, cand: Side, tolerance: float, relative: bool, higher_is_better: bool) -> tuple[str, float, str]:
    """(verdict, threshold, where the threshold came from)."""
    tol = tolerance * abs(base.mean) if relative else tolerance
    est = noise(base, cand)
    threshold = max(tol, est)
    kind = "seeds" if min(base.n, cand.n) >= 2 else "test-set sampling error" if est else "no noise estimate"
    source = (f"larger of tolerance {tolerance:g}{' relative' if relative else ''} (±{tol:.3g}) and noise "
              f"({kind}, {LEVEL:.1%} interval: ±{est:.3g})")
    delta = cand.mean - base.mean
    if abs(delta) <= threshold:
        return "unchanged", threshold, source
    return ("improved" if (delta > 0) == higher_is_better else "regressed"), threshold, source
