"""Verdicts against the best method, from the paired differences of their test scores over the seeds
both ran and a stated tolerance (`decision.tolerance`), as two one-sided tests (TOST) read them:

- equivalent: the 90% interval of the mean difference lies inside +-tolerance (each one-sided test at
  5% rejects "at least a tolerance apart");
- worse / better: the 90% interval lies wholly below / above zero (and not inside the tolerance);
- undecided: neither. An interval that is merely wide is undecided, never a tie.

For an undecided row, `seeds_to_decide` says how many more seeds would likely decide it, assuming
the observed mean and spread of the paired differences hold. Written by hand: scipy gives the t
quantiles, and no package applies TOST to a leaderboard."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import yaml

from harness.spec import DecisionSpec

LEVEL = 0.90  # the interval both one-sided tests read: each at 5%
# One point on a 0-1 score (accuracy, F1, ROUGE): about the smallest gap a team acts on, and about one
# binomial standard error of a 2,000-example test set (sqrt(0.25 / 2000) = 0.011). Declared in spec.py.
DEFAULT_TOLERANCE = DecisionSpec().tolerance
MAX_SEEDS = 100  # "more than this": the spread is too wide to decide at any budget a sweep would spend


@dataclass(frozen=True)
class Verdict:
    word: str  # equivalent | worse | better | undecided
    mean: float  # the mean paired difference, method - best, in the objective's units
    low: float  # its 90% interval
    high: float
    n: int  # seeds both ran
    tolerance: float
    more_seeds: int | None = None  # undecided: seeds to add that would likely decide it (None: decided)


@lru_cache(maxsize=None)
def _t(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + LEVEL / 2, n - 1))


def verdict(differences: list[float], tolerance: float = DEFAULT_TOLERANCE, maximize: bool = True) -> Verdict | None:
    """The verdict of a method against the best from its paired differences (method - best, one per
    seed both ran); None where fewer than two seeds pair up (no interval)."""
    n = len(differences)
    if n < 2:
        return None
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = _t(n) * sd / math.sqrt(n)
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
    more = seeds_to_decide(sign * mean, sd, n, tolerance) if word == "undecided" else None
    return Verdict(word, mean, low, high, n, tolerance, more)


def seeds_to_decide(mean: float, sd: float, n: int, tolerance: float) -> int:
    """Seeds to add before the 90% interval would likely decide, were the observed mean and spread the
    truth: the interval's half-width must fall below the distance from the mean to the nearest
    boundary it can clear (zero, for worse or better; the tolerance, for equivalent)."""
    margin = max(abs(mean), tolerance - abs(mean))
    if sd == 0:
        return 0
    if margin <= 0:
        return MAX_SEEDS
    for total in range(max(n + 1, 2), MAX_SEEDS + 1):
        if _t(total) * sd / math.sqrt(total) < margin:
            return total - n
    return MAX_SEEDS


def decision_of(suite_text: str, **overrides) -> DecisionSpec:
    """A saved suite's decision settings (the defaults where it sets none or cannot be read), with the
    command line's overrides (None: not given)."""
    try:
        data = yaml.safe_load(suite_text or "") or {}
        spec = DecisionSpec.model_validate((data.get("decision") or {}) if isinstance(data, dict) else {})
    except Exception:  # noqa: BLE001 - a hand-edited suite text: the defaults, as for records without one
        spec = DecisionSpec()
    given = {k: v for k, v in overrides.items() if v is not None}
    return DecisionSpec.model_validate({**spec.model_dump(), **given}) if given else spec



PREFER = {"train_memory": ("peak_mib", "train memory"), "train_time": ("train_s", "train time")}


def _learned(row, refs) -> bool:
    """The method beats every reference row (untrained model, trivial predictor) by its seed interval
    (its score, where it ran a single seed)."""
    maximize = row["direction"] == "maximize"
    edge = row["ci_low"] if maximize else row["ci_high"]
    if edge is None or (isinstance(edge, float) and math.isnan(edge)):
        edge = row["objective"]
    scores = [r for r in refs["objective"] if r is not None and not (isinstance(r, float) and math.isnan(r))]
    if not scores:
        return True
    return edge > max(scores) if maximize else edge < min(scores)


def _ratio(value, base) -> float | None:
    ok = all(v is not None and not (isinstance(v, float) and math.isnan(v)) and v > 0 for v in (value, base))
    return value / base if ok else None


def recommended(part, prefer: tuple[str, ...] = ("train_memory", "train_time")) -> str | None:
    """The method the answer recommends for one task x model (None: it recommends none)."""
    return _pick(part, prefer)[1]


def _pick(part, prefer: tuple[str, ...]):
    """(the answer's case, the method it recommends or None, what the text needs): one rule for
    `answer` and `recommended`."""
    methods = part[~part["reference"].astype(bool) & part["objective"].notna()]
    refs = part[part["reference"].astype(bool)]
    if methods.empty:
        return "none completed", None, {}
    learned = methods[[_learned(row, refs) for _, row in methods.iterrows()]]
    if learned.empty:
        return "none learned", None, {"methods": methods, "refs": refs}
    best = methods.loc[methods["rank"].idxmin()]
    if int(best.get("seeds") or 0) < 2:
        return "single runs", None, {"methods": methods, "best": best}
    keys = [PREFER[p][0] for p in prefer if p in PREFER]
    order = lambda frame: frame.sort_values(keys + ["rank"], na_position="last", kind="stable")  # noqa: E731
    candidates = order(learned[learned["verdict"].isin(["best", "equivalent"])])
    if candidates.empty:  # the best's own interval reaches the baselines: the best of those that beat them
        case, chosen = "beats the baselines", learned.sort_values("rank").iloc[0]
    else:
        chosen = candidates.iloc[0]
        case = "best" if chosen.method == best.method else "equivalent"
    return case, chosen.method, {"methods": methods, "best": best, "chosen": chosen, "order": order}


def answer(part, prefer: tuple[str, ...] = ("train_memory", "train_time")) -> str:
    """The answer for one task x model from its leaderboard rows: among the methods that are best or
    equivalent to it and beat the baselines, the one that ranks first by `prefer` (less train memory,
    then less train time); undecided methods that would rank before it are named with the seeds that
    would likely settle them. Where no method beats the untrained model and the trivial predictor, the
    answer says so and recommends nothing."""
    case, _, got = _pick(part, prefer)
    if case == "none completed":
        return "No method completed a trial: nothing to recommend (the records say why)."
    methods = got["methods"]
    metric = methods["objective_metric"].iloc[0]
    if case == "none learned":
        beaten = ", ".join(f"{r.method} {r.objective:.3f}" for r in got["refs"].itertuples()
                           if not math.isnan(r.objective))
        return (f"No method learned this task at this budget: none beats the baselines ({beaten}) by its interval "
                f"on test {metric}. Nothing to recommend; more steps, data or another model first.")
    best = got["best"]
    if case == "single runs":
        return (f"Best by test {metric}: {best.method} ({best.objective:.3f}), from single runs: confirm with seeds "
                f"(confirm.seeds) before choosing on it.")
    chosen, order = got["chosen"], got["order"]
    tolerance = float(best.get("tolerance", DEFAULT_TOLERANCE))
    if case == "beats the baselines":
        text = (f"Use {chosen.method}: the best of the methods that beat the baselines by their interval "
                f"({best.method} scores {best.objective:.3f}, but its interval reaches them)")
    elif case == "best":
        text = f"Use {chosen.method}: the best by test {metric} ({chosen.objective:.3f} over {int(chosen.seeds)} seeds)"
    else:
        mem, speed = _ratio(chosen.peak_mib, best.peak_mib), _ratio(chosen.tokens_per_s, best.tokens_per_s)
        costs = ", ".join(x for x in (f"at {mem:.0%} of its train memory" if mem else "",
                                      f"{speed:.1f}x its tokens/s" if speed else "") if x)
        text = (f"Use {chosen.method}: equivalent to {best.method} within ±{tolerance:g} {metric}"
                + (f", {costs}" if costs else ""))
    ranked = list(order(methods)["method"])
    before = [r for r in methods.itertuples() if r.verdict == "undecided" and not math.isnan(r.more_seeds)
              and ranked.index(r.method) < ranked.index(chosen.method)]
    if before:
        named = "; ".join(f"{r.method} ({r.diff_vs_best:+.3f}, about {int(r.more_seeds)} more "
                          f"seed{'s' if r.more_seeds != 1 else ''})" for r in before)
        text += (f". Undecided against it, and first by {prefer[0].replace('_', ' ')}: {named}; "
                 + ("it could change the answer" if len(before) == 1 else "each could change the answer"))
    return text + "."


def answer_changes(base_records, cand_records, spec: DecisionSpec | None = None) -> list[str]:
    """Per task x model in both sets whose recommended method differs: 'task · model: A -> B' (none
    where a set recommends no method)."""
    from harness.report.leaderboard import leaderboard

    spec = spec or DecisionSpec()
    picks = []
    for records in (base_records, cand_records):
        board = leaderboard(records, spec.tolerance)
        picks.append({key: recommended(part, tuple(spec.prefer))
                      for key, part in board.groupby(["task", "model"], sort=False)} if not board.empty else {})
    return [f"{task} · {model}: {picks[0][(task, model)] or 'none'} -> {picks[1][(task, model)] or 'none'}"
            for task, model in picks[0] if (task, model) in picks[1]
            and picks[0][(task, model)] != picks[1][(task, model)]]


def answers(board, prefer: tuple[str, ...] = ("train_memory", "train_time")) -> dict[tuple[str, str], str]:
    """The answer per task x model of a leaderboard, in its order."""
    return {(task, model): answer(part, tuple(prefer))
            for (task, model), part in board.groupby(["task", "model"], sort=False)}


def decision(records, spec: DecisionSpec | None = None) -> list[dict]:
    """The answer and each method's verdict, per task x model, as data: what `harness recommend
    --json` prints and `Results.decision()` returns."""
    from harness.report.leaderboard import leaderboard

    spec = spec or DecisionSpec()
    board = leaderboard(records, spec.tolerance)
    said = answers(board, tuple(spec.prefer))
    out = []
    for (task, model), part in board.groupby(["task", "model"], sort=False):
        rows = []
        for row in part[~part["reference"].astype(bool)].itertuples():
            number = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)  # noqa: E731
            rows.append({"method": row.method, "verdict": row.verdict, "objective": number(row.objective),
                         "seeds": int(row.seeds or 0), "diff_vs_best": number(row.diff_vs_best),
                         "interval_90": [number(row.diff_low), number(row.diff_high)],
                         "more_seeds": None if number(row.more_seeds) is None else int(row.more_seeds),
                         "train_mib": number(row.peak_mib), "train_s": number(row.train_s),
                         "tokens_per_s": number(row.tokens_per_s)})
        out.append({"task": task, "model": model, "answer": said[(task, model)], "tolerance": spec.tolerance,
                    "prefer": list(spec.prefer), "methods": rows})
    return out
