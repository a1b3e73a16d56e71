"""Verdicts against the best method, and how many confirmation seeds each method gets.

A verdict reads the paired differences of a method's test scores to the best's, over the seeds both
ran, against a stated tolerance (`decision.tolerance`), as two one-sided tests (TOST) read them:

- equivalent: the interval of the mean difference lies inside +-tolerance (each one-sided test at
  5% rejects "at least a tolerance apart");
- worse / better: the interval lies wholly below / above zero (and not inside the tolerance);
- undecided: neither. An interval that is merely wide is undecided, never a tie.

With fixed seeds (`confirm.seeds: N`) the interval is the 90% one: each one-sided claim is wrong at
most 5% of the time. With `confirm.seeds: auto` the verdicts are read at planned looks (after
min_seeds, ..., max_seeds seeds) and seeds are added only where a method is undecided against the
best (and to the best), judged on the seeds' validation scores: which methods get more seeds is a
choice, and the test split only reports. Looking several times would let chance decide more often,
so each look reads a Bonferroni-corrected interval: level 1 - 0.10 / looks (96.7% over 3 looks), and
the report reads the test verdicts at the same level. The chance that any look makes a wrong claim is
then at most the sum over the looks, 5% per side, whatever the data do between looks and whatever
decided when to stop (the plainest alpha-spending rule: an equal share per look).
tests/test_sequential.py and benchmarks/sequential_seeds.py check it by simulation.

Runner and report both read this module (the runner to claim seeds, the report to give verdicts),
so it sits below both. Written by hand: scipy gives the t quantiles; no package applies TOST to a
leaderboard or plans seeds by it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

LEVEL = 0.90  # the interval both one-sided tests read with fixed seeds: each at 5%
MAX_SEEDS = 100  # "more than this": the spread is too wide to decide at any budget a sweep would spend


@dataclass(frozen=True)
class Verdict:
    word: str  # equivalent | worse | better | undecided
    mean: float  # the mean paired difference, method - best, in the objective's units
    low: float  # its interval at `level`
    high: float
    n: int  # seeds both ran
    tolerance: float
    more_seeds: int | None = None  # undecided: seeds to add that would likely decide it (None: decided)
    level: float = LEVEL


@lru_cache(maxsize=None)
def _t(n: int, level: float = LEVEL) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def verdict(differences: list[float], tolerance: float, maximize: bool = True,
            level: float = LEVEL) -> Verdict | None:
    """The verdict of a method against the best from its paired differences (method - best, one per
    seed both ran); None where fewer than two seeds pair up (no interval)."""
    n = len(differences)
    if n < 2:
        return None
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = _t(n, level) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    sign = 1.0 if maximize else -1.0  # "worse" is lower when maximizing, higher when minimizing
    lo, hi = sorted((sign * low, sign * high))
    if -tolerance < lo and hi < tolerance:
        word = "equivalent"
    elif hi < 0:
        word = "worse"
    elif lo > 0:
        word = "better"
    else:
        word = "undecided"
    more = seeds_to_decide(sign * mean, sd, n, tolerance, level) if word == "undecided" else None
    return Verdict(word, mean, low, high, n, tolerance, more, level)


def seeds_to_decide(mean: float, sd: float, n: int, tolerance: float, level: float = LEVEL) -> int:
    """Seeds to add before the interval would likely decide, were the observed mean and spread the
    truth: the interval's half-width must fall below the distance from the mean to the nearest
    boundary it can clear (zero, for worse or better; the tolerance, for equivalent)."""
    margin = max(abs(mean), tolerance - abs(mean))
    if sd == 0:
        return 0
    if margin <= 0:
        return MAX_SEEDS
    for total in range(max(n + 1, 2), MAX_SEEDS + 1):
        if _t(total, level) * sd / math.sqrt(total) < margin:
            return total - n
    return MAX_SEEDS


def looks(min_seeds: int, max_seeds: int, count: int) -> list[int]:
    """The seed counts at which verdicts are read: `count` looks from min_seeds to max_seeds, evenly
    spaced (3, 7, 10 for 3 looks from 3 to 10)."""
    if count <= 1 or max_seeds <= min_seeds:
        return [max_seeds]
    steps = [min_seeds + math.floor((max_seeds - min_seeds) * k / (count - 1) + 0.5) for k in range(count)]
    return sorted(set(steps))


def level_at(n_looks: int) -> float:
    """The interval each look reads: Bonferroni over the planned looks (each one-sided test at
    5% / looks), so the chance of any wrong claim over all looks stays at or under 5% per side."""
    return 1 - (1 - LEVEL) / max(n_looks, 1)


@dataclass
class Plan:
    """What the seed rule decided from the scores so far, per method: how many seeds it gets
    (`target`), why each seed slot was run (`why`), and whether the rule has ended (`settled`: every
    verdict decided, or the last look reached, with every method's seeds finished)."""

    target: dict[str, int]
    why: dict[str, dict[int, str]] = field(default_factory=dict)
    look: dict[str, dict[int, int]] = field(default_factory=dict)  # the look (1-based) each slot was run for
    settled: bool = False
    verdicts: dict[str, str] = field(default_factory=dict)  # at the last look read
    looks: int = 1  # planned
    level: float = LEVEL  # the interval each look reads


def schedule(scores: dict[str, dict[int, float | None]], finished: dict[str, int], plan_looks: list[int],
             tolerance: float, maximize: bool = True) -> Plan:
    """The seed rule of `confirm.seeds: auto` for one task x model, replayed from the scores so far.

    `scores[method][slot]` is the validation score of that method's confirmation run in seed slot `slot`
    (None where the run failed), `finished[method]` how many of its slots have finished. Every method
    runs the first look's seeds; at each look whose seeds have all finished, the best (highest mean
    over its seeds so far) and every method undecided against it (or with fewer than two scored seeds
    paired with it) get the next look's seeds; the rule ends when none is undecided or the last look
    is read. The same rule for every method; deterministic, so any worker, and a resumed sweep,
    replays the same plan from the same records."""
    n_looks = len(plan_looks)
    level = level_at(n_looks)
    methods = list(scores)
    first = plan_looks[0]
    plan = Plan(target={m: first for m in methods},
                why={m: {s: f"look 1 of {n_looks}: every method runs the first {first} seeds" for s in range(first)}
                     for m in methods},
                look={m: {s: 1 for s in range(first)} for m in methods}, looks=n_looks, level=level)
    for k in range(1, n_looks + 1):
        if any(finished.get(m, 0) < plan.target[m] for m in methods):
            return plan  # look k waits for seeds still running or to run
        seen = {m: {s: v for s, v in scores[m].items() if s < plan.target[m] and v is not None} for m in methods}
        scored = {m: sum(v.values()) / len(v) for m, v in seen.items() if v}
        if not scored:
            plan.settled = True
            return plan
        best = min(scored, key=lambda m: (-scored[m] if maximize else scored[m], methods.index(m)))
        undecided, plan.verdicts = [], {best: "best"}
        for m in methods:
            if m == best or m not in scored:
                continue
            pairs = [seen[m][s] - seen[best][s] for s in seen[m] if s in seen[best]]
            found = verdict(pairs, tolerance, maximize, level)
            plan.verdicts[m] = found.word if found else "undecided"
            if found is None or found.word == "undecided":
                undecided.append(m)
        if not undecided or k == n_looks:
            plan.settled = True
            return plan
        nxt = plan_looks[k]
        for m in undecided + [best]:
            reason = (f"look {k + 1} of {n_looks}: the best at look {k} ({', '.join(undecided)} undecided against it)"
                      if m == best else f"look {k + 1} of {n_looks}: undecided against the best ({best}) at look {k}, on validation")
            for s in range(plan.target[m], nxt):
                plan.why[m][s] = reason
                plan.look[m][s] = k + 1
            plan.target[m] = max(plan.target[m], nxt)
    plan.settled = True
    return plan


def simulate(truth: float, sd: float, tolerance: float, rule: str, runs: int, seed: int = 0,
             plan_looks: tuple[int, ...] = (3, 7, 10), fixed: int = 10) -> tuple[list[str], list[int]]:
    """The rule run on synthetic paired scores with a known truth, for the tests and
    benchmarks/sequential_seeds.py: two methods whose per-seed scores share each seed's luck and differ
    by `truth` (b - a) with spread `sd`. Returns the claim each run ends with about b against a
    (`rule`: "auto", the seed rule; "fixed", `fixed` seeds read once at 90%) and the seeds it spent."""
    import random

    rng = random.Random(seed)
    most = max(plan_looks[-1], fixed)
    flip = {"worse": "better", "better": "worse", "equivalent": "equivalent", "undecided": "undecided"}
    claims, spent = [], []
    for _ in range(runs):
        luck = [rng.gauss(0.8, 0.05) for _ in range(most)]
        a = dict(enumerate(luck))
        b = {s: luck[s] + truth + rng.gauss(0, sd) for s in range(most)}
        if rule == "fixed":
            found = verdict([b[s] - a[s] for s in range(fixed)], tolerance)
            claims.append(found.word)
            spent.append(2 * fixed)
            continue
        finished = {"a": 0, "b": 0}
        while True:
            plan = schedule({"a": {s: a[s] for s in range(finished["a"])},
                             "b": {s: b[s] for s in range(finished["b"])}}, finished, list(plan_looks), tolerance)
            if plan.settled:
                break
            finished = dict(plan.target)  # every planned seed runs
        best = "a" if plan.verdicts.get("a") == "best" else "b"
        word = plan.verdicts["b" if best == "a" else "a"]
        claims.append(word if best == "a" else flip[word])
        spent.append(sum(plan.target.values()))
    return claims, spent
