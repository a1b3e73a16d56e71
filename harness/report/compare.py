"""`harness compare BASELINE CANDIDATE`: a verdict for every cell and metric of the baseline
(improved, unchanged, regressed; missing where the candidate has no complete run, which counts as a
regression; new for a cell only the candidate has; not comparable where the numbers mean different
things), with the threshold used (harness/report/verdicts.py). Result sets that are not comparable
(other data, another suite) stop at exit 2 unless --allow-mismatch; a different device is judged on
quality only. Exit 1 on any regression."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from harness.errors import UserError
from harness.measure.host import BUSY_SHARE, busy_share
from harness.records.schema import TrialRecord
from harness.records.select import chosen_runs, skipped_cells
from harness.records.store import SUITE_FILE, open_store, setting_differences
from harness.report.decide import answer_changes
from harness.report.pages import write_page
from harness.report.verdicts import LEVEL, Side, judge, side
from harness.spec import CompareSpec


@dataclass(frozen=True)
class Metric:
    name: str
    definition: str  # key in records' `definitions`
    tolerance: str  # CompareSpec field
    relative: bool
    higher_is_better: bool | None  # None: the objective's direction
    unit: str
    speed_or_memory: bool  # needs the same device to be compared

    def values(self, r: TrialRecord) -> float | None:
        memory = r.memory.train_bytes if r.definitions.get("peak_memory", 1) >= 2 else r.memory.peak_bytes
        return {"quality": r.objective, "peak_memory_mib": (memory or 0) / 2**20,
                "train_tokens_per_s": r.throughput.train_tokens_per_s, "train_s": r.timing.train_s}[self.name]

    def show(self, value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if self.name == "quality":
            return f"{value:.3f}"
        if self.name == "train_s":
            return f"{value:.1f} s"
        return f"{value:,.0f} {self.unit}"


METRICS = (
    Metric("quality", "quality", "quality_abs", False, None, "", False),
    Metric("peak_memory_mib", "peak_memory", "memory_rel", True, False, "MiB", True),
    Metric("train_tokens_per_s", "throughput", "throughput_rel", True, True, "tokens/s", True),
    Metric("train_s", "train_time", "time_rel", True, False, "s", True),
)


@dataclass
class Verdict:
    cell: str
    metric: str
    verdict: str  # improved | unchanged | regressed | missing | skipped | new | not comparable
    baseline: float | None = None
    candidate: float | None = None
    threshold: float | None = None
    noise_from: str = ""
    reason: str = ""
    base_interval: tuple[float, float] | None = None
    cand_interval: tuple[float, float] | None = None
    shown: dict = field(default_factory=dict)  # display strings

    @property
    def change(self) -> float:
        if self.baseline is None or self.candidate is None:
            return math.nan
        return self.candidate - self.baseline

    @property
    def change_pct(self) -> float:
        return 100.0 * self.change / abs(self.baseline) if self.baseline else math.nan

    failing_skip: bool = False  # skipped in the candidate where the baseline ran the cell

    @property
    def is_failure(self) -> bool:
        return self.verdict in ("regressed", "missing") or (self.verdict == "skipped" and self.failing_skip)


@dataclass
class Comparison:
    verdicts: list[Verdict]
    provenance: list[tuple[str, str, str]]  # (what, baseline, candidate) that differ
    mismatches: list[str]  # why the two sets are not comparable (with --allow-mismatch: compared anyway)
    allowed_mismatch: bool
    tolerances: CompareSpec
    answer_changes: list[str] = field(default_factory=list)  # 'task · model: A -> B' (report/decide.py)

    @property
    def exit_code(self) -> int:
        return 1 if any(v.is_failure for v in self.verdicts) else 0

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in ("regressed", "missing", "skipped", "improved", "unchanged", "new", "not comparable", "not judged")}
        for v in self.verdicts:
            out[v.verdict] = out.get(v.verdict, 0) + 1
        return out


def results_folder(path: str | Path) -> Path | str:
    """The folder holding records/: the path itself, or its only suite folder inside; or a
    PostgreSQL results set, written postgresql://USER@HOST/DB#SUITE, as it is."""
    from harness.records.pg import is_postgres

    if is_postgres(str(path)):
        if "#" not in str(path):
            raise UserError(f"{path}: name the suite after a #: postgresql://USER@HOST/DB#SUITE")
        return str(path)
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{folder}: results folder not found")
    if (folder / "records").is_dir():
        return folder
    inner = [p for p in folder.iterdir() if (p / "records").is_dir()]
    if len(inner) == 1:
        return inner[0]
    if not inner:
        raise UserError(f"{folder}: no trial records here (expected records/<cell>/*.json or one suite folder)")
    raise UserError(f"{folder}: holds several suites ({', '.join(p.name for p in inner)}); name one of them")


def _saved_suite(location: Path | str) -> dict:
    return open_store(location).settings()


def tolerances(baseline_folder: Path, overrides: dict) -> CompareSpec:
    """The baseline's own tolerances (the candidate may be the broken one), then the command line's."""
    spec = _saved_suite(baseline_folder).get("compare") or {}
    try:
        return CompareSpec.model_validate({**spec, **{k: v for k, v in overrides.items() if v is not None}})
    except Exception as exc:  # noqa: BLE001 - a hand-edited suite.yaml: say where
        raise UserError(f"{open_store(baseline_folder).where} ({SUITE_FILE}): compare: {exc}")


def cell_samples(records: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """Per cell: the validation-best trial's confirmation runs (one per seed), else that trial."""
    return {cell: [r for r in runs if r.objective is not None] for cell, runs in chosen_runs(records).items()
            if any(r.objective is not None for r in runs)}


def mismatches(base_dir: Path, cand_dir: Path, base: list[TrialRecord], cand: list[TrialRecord]) -> list[str]:
    """Why two result sets do not measure the same thing: other data, or other suite settings."""
    out = []
    fp = lambda rs: {r.cell_id.split("--")[0]: r.data_fingerprint for r in rs if r.data_fingerprint}  # noqa: E731
    fb, fc = fp(base), fp(cand)
    for task in sorted(set(fb) & set(fc)):
        if fb[task] != fc[task]:
            out.append(f"data of task {task} differ (fingerprint {fb[task]} -> {fc[task]})")
    for key, before, after in setting_differences(_saved_suite(base_dir), _saved_suite(cand_dir)):
        out.append(f"suite setting {key!r} differs: {before!r} -> {after!r}")
    return out


def provenance_differences(base: list[TrialRecord], cand: list[TrialRecord]) -> list[tuple[str, str, str]]:
    """Package versions, git commit and hardware that changed between the sets: often the cause."""
    if not base or not cand:
        return []
    eb, ec = base[0].environment, cand[0].environment
    out = []
    for name in sorted(set(eb.get("versions") or {}) | set(ec.get("versions") or {})):
        b, c = (eb.get("versions") or {}).get(name), (ec.get("versions") or {}).get(name)
        if b != c:
            out.append((f"{name} version", str(b), str(c)))
    for key, label in (("git_commit", "git commit"), ("git_dirty", "uncommitted changes"), ("cpu", "CPU"),
                       ("gpus", "GPUs"), ("driver", "GPU driver"), ("cpu_count", "CPU cores"), ("python", "python")):
        if eb.get(key) != ec.get(key):
            out.append((label, str(eb.get(key)), str(ec.get(key))))
    return out


def _device(records: list[TrialRecord]) -> str:
    env = records[0].environment
    return ", ".join(env.get("gpus") or []) or str(env.get("cpu"))


def compare(baseline: list[TrialRecord], candidate: list[TrialRecord], tol: CompareSpec) -> list[Verdict]:
    """A verdict for every cell and metric of the baseline, and a 'new' line per new cell."""
    base, cand = cell_samples(baseline), cell_samples(candidate)
    device_differs = bool(baseline and candidate) and _device(baseline) != _device(candidate)
    verdicts = []
    skipped = skipped_cells(candidate)
    for cell in sorted(set(skipped) - set(cand)):
        verdicts.append(Verdict(cell, "all", "skipped", failing_skip=cell in base,
                                reason=("the baseline ran it; " if cell in base else "") + skipped[cell]))
    for cell in sorted(base):
        if cell in skipped:  # listed above (a skipped cell has no complete run to compare)
            continue
        if cell not in cand:
            runs = [r for r in candidate if r.cell_id == cell]
            reasons = sorted({f"{r.status}: {(r.reason or '').splitlines()[0][:200]}" for r in runs}) or [
                "the candidate has no records of this cell"]
            verdicts.append(Verdict(cell, "all", "missing", reason="; ".join(reasons)))
            continue
        for metric in METRICS:
            verdicts.append(_verdict(cell, metric, base[cell], cand[cell], tol, device_differs))
    for cell in sorted(set(cand) - set(base)):
        verdicts.append(Verdict(cell, "all", "new", reason="only the candidate has this cell"))
    return verdicts


def _verdict(cell: str, metric: Metric, b: list[TrialRecord], c: list[TrialRecord], tol: CompareSpec,
             device_differs: bool) -> Verdict:
    v = Verdict(cell, metric.name, "unchanged")
    defs = ({r.definitions.get(metric.definition) for r in b}, {r.definitions.get(metric.definition) for r in c})
    if defs[0] != defs[1]:
        v.verdict = "not comparable"
        v.reason = (f"{metric.definition} is defined differently in the two sets (definition "
                    f"{'/'.join(map(str, sorted(defs[0], key=str)))} -> {'/'.join(map(str, sorted(defs[1], key=str)))})")
        return v
    if metric.speed_or_memory and device_differs:
        v.verdict, v.reason = "not comparable", "device differs"
        return v
    busy = max(busy_share(r.host) for r in (*b, *c))
    if metric.name in ("train_tokens_per_s", "train_s") and busy > BUSY_SHARE:
        v.verdict = "not judged"
        v.reason = f"host busy {busy:.0%} (other processes' share of the CPU above {BUSY_SHARE:.0%})"
        return v
    values_b, values_c = [metric.values(r) for r in b], [metric.values(r) for r in c]
    errors = lambda rs: (rs[0].metric_errors.get(rs[0].objective_metric) if metric.name == "quality" else None)  # noqa: E731
    sb, sc = side(values_b, errors(b)), side(values_c, errors(c))
    higher = metric.higher_is_better
    if higher is None:
        higher = b[0].objective_direction == "maximize"
    v.verdict, v.threshold, v.noise_from = judge(sb, sc, getattr(tol, metric.tolerance), metric.relative, higher)
    v.baseline, v.candidate = sb.mean, sc.mean
    v.base_interval, v.cand_interval = sb.interval, sc.interval
    v.shown = {"baseline": f"{metric.show(sb.mean)} (n={sb.n})", "candidate": f"{metric.show(sc.mean)} (n={sc.n})",
               "change": _change_text(metric, sb, sc), "threshold": f"±{_plain(metric, v.threshold)}"}
    return v


def _plain(metric: Metric, value: float) -> str:
    return f"{value:.3f}" if metric.name == "quality" else f"{value:,.3g}"


def _change_text(metric: Metric, b: Side, c: Side) -> str:
    delta = c.mean - b.mean
    pct = f" ({100 * delta / abs(b.mean):+.1f}%)" if b.mean else ""
    return (f"{delta:+.3f}" if metric.name == "quality" else f"{delta:+,.3g}") + pct


def write_junit(result: Comparison, path: Path) -> None:
    verdicts = result.verdicts
    suite = ET.Element("testsuite", name="harness compare", tests=str(len(verdicts)),
                       failures=str(sum(v.is_failure for v in verdicts)))
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname=v.cell, name=v.metric)
        detail = (f"baseline {v.shown.get('baseline', '—')} -> candidate {v.shown.get('candidate', '—')} "
                  f"(change {v.shown.get('change', '—')}, threshold {v.shown.get('threshold', '—')} from "
                  f"{v.noise_from or '—'}){': ' + v.reason if v.reason else ''}: {v.verdict}")
        if result.allowed_mismatch:
            detail = "[compared despite: " + "; ".join(result.mismatches) + "] " + detail
        if v.is_failure:
            ET.SubElement(case, "failure", message=f"{v.metric} {v.verdict}").text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _bar(v: Verdict) -> dict | None:
    """Positions (0-100) for the page's drawing: both intervals and the threshold band around the baseline."""
    if v.baseline is None or v.candidate is None or v.threshold is None:
        return None
    lo_b, hi_b = v.base_interval or (v.baseline, v.baseline)
    lo_c, hi_c = v.cand_interval or (v.candidate, v.candidate)
    lo = min(lo_b, lo_c, v.baseline - v.threshold)
    hi = max(hi_b, hi_c, v.baseline + v.threshold)
    span = (hi - lo) or 1.0
    pos = lambda x: 4 + 92 * (x - lo) / span  # noqa: E731
    return {"band": (pos(v.baseline - v.threshold), pos(v.baseline + v.threshold)),
            "base": (pos(lo_b), pos(v.baseline), pos(hi_b)), "cand": (pos(lo_c), pos(v.candidate), pos(hi_c))}


def _report_link(folder: Path | str) -> str | None:
    if not isinstance(folder, Path):
        return None
    page = open_store(folder).reports_dir() / folder.name / "index.html"
    return str(page.resolve()) if page.exists() else None


def write_html(result: Comparison, baseline: Path, candidate: Path, out_dir: Path) -> Path:
    order = {"regressed": 0, "missing": 0, "skipped": 1, "not comparable": 1, "not judged": 1, "new": 2, "improved": 3, "unchanged": 4}
    rows = sorted(result.verdicts, key=lambda v: (order.get(v.verdict, 9), v.cell, v.metric))
    return write_page("compare.html.j2", out_dir, result=result, rows=[(v, _bar(v)) for v in rows],
                      counts=result.counts(), baseline=str(baseline), candidate=str(candidate),
                      baseline_report=_report_link(baseline), candidate_report=_report_link(candidate), level=LEVEL)


def print_verdicts(result: Comparison, baseline: str, candidate: str) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    counts = result.counts()
    # plain lines, never wrapped: CI logs grep them; a changed answer heads them
    for change in result.answer_changes:
        print(f"the answer changed: {change}")
    print(f"compare {baseline} -> {candidate}: {counts['regressed']} regressed, {counts['missing']} missing, "
          f"{counts['skipped']} skipped, "
          f"{counts['improved']} improved, {counts['unchanged']} unchanged, {counts['not comparable']} not "
          f"comparable, {counts['not judged']} not judged, {counts['new']} new: exit {result.exit_code}")
    if result.allowed_mismatch:
        print("compared despite --allow-mismatch: " + "; ".join(result.mismatches))
    for what, b, c in result.provenance:
        print(f"  changed: {what}: {b} -> {c}")
    for v in result.verdicts:
        if v.verdict in ("missing", "skipped"):
            print(f"  {v.verdict}: {v.cell}: {v.reason}")
    colours = {"improved": "green", "regressed": "bold red", "missing": "bold red", "skipped": "yellow",
               "not comparable": "yellow",
               "not judged": "yellow"}
    table = Table(title_justify="left")
    for col in ("cell", "metric", "baseline", "candidate", "change", "threshold", "verdict", "why"):
        table.add_column(col, justify="left" if col in ("cell", "metric", "verdict", "why") else "right")
    for v in result.verdicts:
        colour = colours.get(v.verdict, "")
        verdict = f"[{colour}]{v.verdict}[/]" if colour else v.verdict
        table.add_row(v.cell, v.metric, v.shown.get("baseline", "—"), v.shown.get("candidate", "—"),
                      v.shown.get("change", "—"), v.shown.get("threshold", "—"), verdict, v.reason or v.noise_from)
    console.print(table)


def comparison(baseline: str, candidate: str, overrides: dict | None = None,
               allow_mismatch: bool = False) -> tuple[Comparison, Path | str, Path | str]:
    """(the verdicts, the two results folders): what `harness compare` and the Python API share."""
    base_dir, cand_dir = results_folder(baseline), results_folder(candidate)
    base_records, cand_records = open_store(base_dir).load_all(), open_store(cand_dir).load_all()
    if not base_records:
        raise UserError(f"{base_dir}: the baseline has no records")
    found = mismatches(base_dir, cand_dir, base_records, cand_records)
    if found and not allow_mismatch:
        raise UserError([f"{base_dir} and {cand_dir} are not comparable: {m}" for m in found] +
                        ["compare them anyway with --allow-mismatch (every output then says so)"])
    tol = tolerances(base_dir, overrides or {})
    # the answer read with the baseline's decision settings on both sides (the candidate may be the broken one)
    # (and, where the suite names a decision.target, the baseline's predictions there: report/target.py)
    from harness.report.publish import answer_terms

    base_store = open_store(base_dir)
    terms = answer_terms(base_store.saved_suite() or "", base_records,
                         base_store.reports_dir() / base_records[0].suite, Path.cwd())
    changed = answer_changes(base_records, cand_records, terms)
    return (Comparison(compare(base_records, cand_records, tol), provenance_differences(base_records, cand_records),
                       found, bool(found), tol, changed), base_dir, cand_dir)


def run_compare(baseline: str, candidate: str, out: str | None, overrides: dict, allow_mismatch: bool = False) -> int:
    result, base_dir, cand_dir = comparison(baseline, candidate, overrides, allow_mismatch)
    print_verdicts(result, str(baseline), str(candidate))
    label = lambda d: f"{d.parent.name}-{d.name}" if isinstance(d, Path) else d.rpartition("#")[2]  # noqa: E731
    out_dir = Path(out) if out else Path("reports") / "compare" / f"{label(base_dir)}__{label(cand_dir)}"
    write_junit(result, out_dir / "junit.xml")
    write_html(result, base_dir, cand_dir, out_dir)
    print(f"wrote {out_dir / 'index.html'} and {out_dir / 'junit.xml'}")
    return result.exit_code
