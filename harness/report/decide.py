"""The answer per task x model, read from the leaderboard's verdicts (harness/sequential.py gives
them: two one-sided tests against the best at `decision.tolerance`), the suite's `decision.prefer`
and `decision.limits`, and where the suite names one, its `decision.target` (the estimate at the
team's real model and GPU)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.report.target import fits_somewhere
from harness.sequential import LEVEL, MAX_SEEDS, Verdict, seeds_to_decide, verdict  # noqa: F401 - re-exported
from harness.spec import DecisionSpec

# One point on a 0-1 score (accuracy, F1, ROUGE): about the smallest gap a team acts on, and about one
# binomial standard error of a 2,000-example test set (sqrt(0.25 / 2000) = 0.011). Declared in spec.py.
DEFAULT_TOLERANCE = DecisionSpec().tolerance


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


PREFER = {"train_memory": ("peak_mib", "train memory"), "train_time": ("train_s", "train time"),
          "forgetting": ("forgets", "forgetting"), "serving_latency": ("serve_ms", "serving latency"),
          "serving_memory": ("serve_mib", "serving memory")}  # forgets: forgetting (decoder LMs), else representation drift


@dataclass(frozen=True)
class Terms:
    """What the answer reads beside the leaderboard: the suite's decision settings, its price per
    GPU-hour (for a cost limit) and, where it names a target, each method's prediction there
    (report/target.py)."""

    spec: DecisionSpec = field(default_factory=DecisionSpec)
    price: float | None = None
    target: tuple[dict, ...] = ()

    @property
    def prefer(self) -> tuple[str, ...]:
        return tuple(self.spec.prefer)

    def at(self, task: str, method: str) -> dict | None:
        return next((t for t in self.target if t["task"] == task and t["method"] == method), None)


def terms_of(suite_text: str, **overrides) -> Terms:
    """A saved suite's decision terms, with the command line's overrides (the predictions at its target,
    if any, are added by report/publish.py's answer_terms)."""
    try:
        price = ((yaml.safe_load(suite_text or "") or {}).get("measure") or {}).get("price_per_gpu_hour")
    except Exception:  # noqa: BLE001 - as decision_of: a hand-edited suite text
        price = None
    return Terms(decision_of(suite_text, **overrides), price if isinstance(price, (int, float)) else None)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def breaks(row, terms: Terms) -> list[str]:
    """The limits of decision.limits this method breaks, each in words. With a target, memory and
    hours are the ones predicted there (a method fits where some micro-batch does: gradient
    accumulation keeps the batch); without one, the ones measured here."""
    limits, out = terms.spec.limits, []
    at = terms.at(row["task"], row["method"])
    if at is not None:
        if fits_somewhere(at) is False:
            out.append(f"memory: needs {_gib(at['predicted_bytes'])} at micro-batch {at['micro_batch']} at the target "
                       f"(predicted; its CUDA context beside), over {_gib(at['limit_bytes'])}, and no micro-batch fits")
        hours = at.get("train_hours")
    else:
        from harness.estimate import GPUS
        from harness.estimate.parts import CUDA_CONTEXT_BYTES
        from harness.spec import parse_bytes

        caps = [(parse_bytes(limits.memory), f"decision.limits.memory {limits.memory}")] if limits.memory else []
        if limits.gpu:
            usable = GPUS[limits.gpu][1] - CUDA_CONTEXT_BYTES
            caps.append((usable, f"{GPUS[limits.gpu][0]} memory ({_gib(usable)} after its CUDA context)"))
        mib = row.get("peak_mib")
        for cap, name in caps:
            if mib is not None and not (isinstance(mib, float) and math.isnan(mib)) and mib * 2**20 > cap:
                out.append(f"memory: {mib * 2**20 / 2**30:.1f} GiB measured, over {name}")
        hours = row.get("train_s") / 3600 if row.get("train_s") is not None and not math.isnan(row.get("train_s")) else None
    out += _forgets(row, limits) + _serves(row, limits)
    where = "at the target" if at is not None else "measured"
    if limits.train_hours is not None and hours is not None and hours > limits.train_hours:
        out.append(f"time: {hours:.2f} h per run {where}, over {limits.train_hours:g} h")
    if limits.cost is not None and hours is not None and terms.price is not None and hours * terms.price > limits.cost:
        out.append(f"cost: ${hours * terms.price:,.2f} per run {where}, over ${limits.cost:g}")
    return out


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _forgets(row, limits) -> list[str]:
    """decision.limits on retention, read on the measured mean (seed mean where confirmed)."""
    out = []
    forgetting, drift = _number(row.get("forgetting")), _number(row.get("repr_drift"))
    if limits.max_forgetting is not None and forgetting is not None and forgetting > limits.max_forgetting:
        out.append(f"forgetting: {forgetting:+.3f} nats/token on general text, over {limits.max_forgetting:g}")
    if limits.max_representation_drift is not None and drift is not None and drift > limits.max_representation_drift:
        out.append(f"representation drift: {drift:.3f}, over {limits.max_representation_drift:g}")
    return out


def _serves(row, limits) -> list[str]:
    """decision.limits on serving: the shipped variant's overhead against the base, and an engine that must
    take the artifact (harness/data/serving_engines.yaml)."""
    out = []
    overhead = _number(row.get("serve_overhead"))
    if limits.serving_overhead is not None and overhead is not None and overhead > limits.serving_overhead:
        out.append(f"serving overhead: {overhead:+.0f}% over the base, over {limits.serving_overhead:g}%")
    if limits.serve_with is not None and row.get("artifact"):
        from harness.report.engines import engine_file, serves_with

        entry = serves_with(row["artifact"], None, limits.serve_with)
        name = engine_file().engines[limits.serve_with].name
        if entry is not None and entry.serves == "no":
            out.append(f"serving: {name} cannot serve it ({entry.note or 'not supported'})")
    return out


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


def recommended(part, terms: Terms | None = None) -> str | None:
    """The method the answer recommends for one task x model (None: it recommends none)."""
    return _pick(part, terms or Terms())[1]


def _costs_at_target(part, terms: Terms):
    """With a decision.target, what `prefer` and the answer's ratios read are the predictions there
    (train memory, tokens/s, time of one run), not the proxy's measurements."""
    if not terms.target:
        return part
    part = part.copy()
    for idx, row in part.iterrows():
        at = terms.at(row["task"], row["method"])
        if at is not None:
            part.at[idx, "peak_mib"] = at["predicted_bytes"] / 2**20
            part.at[idx, "tokens_per_s"] = at.get("tokens_per_s") or math.nan
            part.at[idx, "train_s"] = (at.get("train_hours") or math.nan) * 3600
    return part


def _pick(part, terms: Terms):
    """(the answer's case, the method it recommends or None, what the text needs): one rule for
    `answer` and `recommended`."""
    part = _costs_at_target(part, terms)
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
    broken = {row.method: breaks(row, terms) for _, row in methods.iterrows()}
    broken = {m: b for m, b in broken.items() if b}
    keys = [PREFER[p][0] for p in terms.prefer if p in PREFER]
    order = lambda frame: frame.sort_values(keys + ["rank"], na_position="last", kind="stable")  # noqa: E731
    within = learned[~learned["method"].isin(broken)]
    got = {"methods": methods, "best": best, "order": order, "broken": broken}
    if within.empty:
        return "none within limits", None, got
    candidates = order(within[within["verdict"].isin(["best", "equivalent"])])
    if candidates.empty and learned["verdict"].isin(["best", "equivalent"]).any() and broken:
        case, chosen = "limits", within.sort_values("rank").iloc[0]  # the best and its equivalents break limits
    elif candidates.empty:  # the best's own interval reaches the baselines: the best of those that beat them
        case, chosen = "beats the baselines", within.sort_values("rank").iloc[0]
    else:
        chosen = candidates.iloc[0]
        case = "best" if chosen.method == best.method else "equivalent"
    return case, chosen.method, {**got, "chosen": chosen}


def answer(part, terms: Terms | None = None) -> str:
    """The answer for one task x model from its leaderboard rows: among the methods that are best or
    equivalent to it, beat the baselines and keep within decision.limits, the one that ranks first by
    `prefer` (less train memory, then less train time); undecided methods that would rank before it
    are named with the seeds that would likely settle them, methods that break a limit with the limit.
    Where no method beats the untrained model and the trivial predictor, the answer says so and
    recommends nothing."""
    terms = terms or Terms()
    case, _, got = _pick(part, terms)
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
    ruled = "; ".join(f"{m} ({', '.join(b)})" for m, b in got["broken"].items())
    if case == "none within limits":
        return f"No method keeps within decision.limits: {ruled}. Nothing to recommend within them."
    chosen, order = got["chosen"], got["order"]
    tolerance = float(best.get("tolerance", DEFAULT_TOLERANCE))
    if case == "limits":
        text = (f"Use {chosen.method}: the best within decision.limits, {chosen.verdict} against the best "
                f"({best.method}, {chosen.diff_vs_best:+.3f} {metric}), which breaks them")
    elif case == "beats the baselines":
        text = (f"Use {chosen.method}: the best of the methods that beat the baselines by their interval "
                f"({best.method} scores {best.objective:.3f}, but its interval reaches them)")
    elif case == "best":
        text = f"Use {chosen.method}: the best by test {metric} ({chosen.objective:.3f} over {int(chosen.seeds)} seeds)"
    else:
        mem, speed = _ratio(chosen.peak_mib, best.peak_mib), _ratio(chosen.tokens_per_s, best.tokens_per_s)
        costs = ", ".join(x for x in (f"at {mem:.0%} of its train memory" if mem else "",
                                      f"{speed:.1f}x its tokens/s" if speed else "") if x)
        here = " at the target" if terms.target else ""
        text = (f"Use {chosen.method}: equivalent to {best.method} within ±{tolerance:g} {metric}"
                + (f", {costs}{here}" if costs else ""))
    at = terms.at(chosen.task, chosen.method)
    if at is not None:
        speed = f", ~{at['tokens_per_s']:,.0f} tokens/s" if at.get("tokens_per_s") else ""
        text += (f". At the target ({Path(at['model']).name}, {at['gpu'] or 'the given memory'}, {at['seq_len']} "
                 f"tokens; predicted, quality measured on {chosen.model}): {_gib(at['predicted_bytes'])} at micro-batch "
                 f"{at['micro_batch']}, up to micro-batch {at['max_micro_batch']}{speed}")
    forgetting = _number(chosen.get("forgetting"))
    if forgetting is not None:
        low, high = _number(chosen.get("forgetting_low")), _number(chosen.get("forgetting_high"))
        text += (f". It forgets {forgetting:+.3f} nats/token on general text"
                 + (f" [{low:+.3f}, {high:+.3f}]" if low is not None else ""))
    text += _serving_text(chosen)
    ranked = list(order(methods)["method"])
    before = [r for r in methods.itertuples() if r.verdict == "undecided" and not math.isnan(r.more_seeds)
              and r.method not in got["broken"] and ranked.index(r.method) < ranked.index(chosen.method)]
    if before:
        named = "; ".join(f"{r.method} ({r.diff_vs_best:+.3f}, about {int(r.more_seeds)} more "
                          f"seed{'s' if r.more_seeds != 1 else ''})" for r in before)
        text += (f". Undecided against it, and first by {terms.prefer[0].replace('_', ' ')}: {named}; "
                 + ("it could change the answer" if len(before) == 1 else "each could change the answer"))
    if ruled:
        text += f". Ruled out by decision.limits: {ruled}"
    return text + "."


def _serving_text(chosen) -> str:
    """What the chosen method costs to serve, where it was profiled: the variant it ships and its overhead."""
    ms, overhead = _number(chosen.get("serve_ms")), _number(chosen.get("serve_overhead"))
    if ms is None:
        return ""
    how = chosen.get("serve_variant") or "as trained"
    unit = "ms/token" if chosen.get("serve_mode") == "generate" else "ms/example"
    return (f". Served {how}: {ms:.2f} {unit}" + (f", {overhead:+.0f}% against the base" if overhead is not None
                                                   else ""))


def answer_changes(base_records, cand_records, terms: Terms | None = None) -> list[str]:
    """Per task x model in both sets whose recommended method differs: 'task · model: A -> B' (none
    where a set recommends no method)."""
    from harness.report.leaderboard import leaderboard

    terms = terms or Terms()
    picks = []
    for records in (base_records, cand_records):
        board = leaderboard(records, terms.spec.tolerance)
        picks.append({key: recommended(part, terms)
                      for key, part in board.groupby(["task", "model"], sort=False)} if not board.empty else {})
    return [f"{task} · {model}: {picks[0][(task, model)] or 'none'} -> {picks[1][(task, model)] or 'none'}"
            for task, model in picks[0] if (task, model) in picks[1]
            and picks[0][(task, model)] != picks[1][(task, model)]]


def answers(board, terms: Terms | None = None) -> dict[tuple[str, str], str]:
    """The answer per task x model of a leaderboard, in its order."""
    return {(task, model): answer(part, terms)
            for (task, model), part in board.groupby(["task", "model"], sort=False)}


def _engines(artifact) -> dict | None:
    from harness.report.engines import support

    found = support(artifact) if isinstance(artifact, str) else None
    return None if found is None else {k: e.serves for k, e in found.items()}


def decision(records, terms: Terms | None = None) -> list[dict]:
    """The answer and each method's verdict, per task x model, as data: what `harness recommend
    --json` prints and `Results.decision()` returns."""
    from harness.report.leaderboard import leaderboard

    terms = terms or Terms()
    spec = terms.spec
    board = leaderboard(records, spec.tolerance)
    said = answers(board, terms)
    out = []
    for (task, model), part in board.groupby(["task", "model"], sort=False):
        rows = []
        for row in part[~part["reference"].astype(bool)].itertuples():
            number = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)  # noqa: E731
            rows.append({"method": row.method, "verdict": row.verdict, "objective": number(row.objective),
                         "seeds": int(row.seeds or 0), "diff_vs_best": number(row.diff_vs_best),
                         "interval": [number(row.diff_low), number(row.diff_high)], "level": number(row.level),
                         "more_seeds": None if number(row.more_seeds) is None else int(row.more_seeds),
                         "train_mib": number(row.peak_mib), "train_s": number(row.train_s),
                         "tokens_per_s": number(row.tokens_per_s), "breaks": breaks(row._asdict(), terms),
                         "forgetting": number(row.forgetting),
                         "forgetting_interval": [number(row.forgetting_low), number(row.forgetting_high)],
                         "drift": number(row.drift), "representation_drift": number(row.repr_drift),
                         "serving": {"ships": row.serve_variant if isinstance(row.serve_variant, str) else None,
                                     "ms": number(row.serve_ms), "overhead_pct": number(row.serve_overhead),
                                     "mib": number(row.serve_mib), "usd_per_million_tokens": number(row.serve_cost),
                                     "engines": _engines(row.artifact)},
                         "at_target": terms.at(task, row.method)})
        out.append({"task": task, "model": model, "answer": said[(task, model)], "tolerance": spec.tolerance,
                    "prefer": list(spec.prefer), "limits": spec.limits.model_dump(exclude_none=True),
                    "target": spec.target.model_dump(exclude_none=True) if spec.target else None, "methods": rows})
    return out
