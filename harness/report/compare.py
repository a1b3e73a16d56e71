"""`harness compare BASELINE CANDIDATE`: match cells across two results folders and give each
metric a verdict: improved, unchanged (within noise) or regressed.

The noise threshold for a metric: where both sides carry several seeds (confirmation runs), the
half-width of the 95% confidence interval of the difference of means (Welch; Student's t with
Welch-Satterthwaite degrees of freedom); where they do not, or the seeds agree exactly, the
tolerance from the suite's `compare:` section or the command line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import yaml

from harness.spec import CompareSpec
from harness.errors import UserError
from harness.records.schema import TrialRecord
from harness.records.select import chosen_runs
from harness.records.store import RecordStore
from harness.report.pages import write_page

# (name, record accessor, higher is better (None: the objective's direction), tolerance field, relative?)
METRICS = (
    ("quality", lambda r: r.objective, None, "quality_abs", False),
    ("peak_memory_mib", lambda r: r.memory.peak_bytes / 2**20, False, "memory_rel", True),
    ("train_tokens_per_s", lambda r: r.throughput.train_tokens_per_s, True, "throughput_rel", True),
    ("train_s", lambda r: r.timing.train_s, False, "time_rel", True),
)


@dataclass
class Verdict:
    cell: str
    metric: str
    baseline: float
    candidate: float
    threshold: float
    noise_from: str  # "seeds (n=3 vs 3)" or "tolerance"
    verdict: str  # improved | unchanged | regressed

    @property
    def change(self) -> float:
        return self.candidate - self.baseline

    @property
    def change_pct(self) -> float:
        return 100.0 * self.change / abs(self.baseline) if self.baseline else math.nan


def results_folder(path: str | Path) -> Path:
    """The folder holding records/: the path itself, or its only suite folder inside."""
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


def tolerances(folder: Path, overrides: dict) -> CompareSpec:
    spec = {}
    suite_file = folder / "suite.yaml"
    if suite_file.exists():
        spec = (yaml.safe_load(suite_file.read_text()) or {}).get("compare") or {}
    return CompareSpec.model_validate({**spec, **{k: v for k, v in overrides.items() if v is not None}})


def cell_samples(records: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """Per cell: the validation-best trial's confirmation runs (one per seed), else that trial."""
    return {cell: [r for r in runs if r.objective is not None] for cell, runs in chosen_runs(records).items()
            if any(r.objective is not None for r in runs)}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, sd


def noise_threshold(base: list[float], cand: list[float]) -> float:
    """Half-width of the 95% CI of the difference of means (Welch), 0 where it cannot be estimated."""
    from scipy import stats

    if len(base) < 2 or len(cand) < 2:
        return 0.0
    (_, sb), (_, sc) = _mean_sd(base), _mean_sd(cand)
    vb, vc = sb**2 / len(base), sc**2 / len(cand)
    if vb + vc == 0:
        return 0.0
    df = (vb + vc) ** 2 / ((vb**2 / (len(base) - 1) if vb else 0) + (vc**2 / (len(cand) - 1) if vc else 0))
    return float(stats.t.ppf(0.975, df) * math.sqrt(vb + vc))


def compare(baseline: list[TrialRecord], candidate: list[TrialRecord], tol: CompareSpec) -> list[Verdict]:
    base, cand = cell_samples(baseline), cell_samples(candidate)
    shared = sorted(set(base) & set(cand))
    if not shared:
        raise UserError(f"no cells in common: baseline has {', '.join(sorted(base)) or 'none'}; "
                        f"candidate has {', '.join(sorted(cand)) or 'none'}")
    verdicts = []
    for cell in shared:
        for name, get, higher, tol_field, relative in METRICS:
            b = [get(r) for r in base[cell]]
            c = [get(r) for r in cand[cell]]
            if higher is None:
                higher = base[cell][0].objective_direction == "maximize"
            bm, cm = _mean_sd(b)[0], _mean_sd(c)[0]
            threshold = noise_threshold(b, c)
            noise_from = f"seeds (n={len(b)} vs {len(c)})"
            if threshold == 0.0:
                tolerance = getattr(tol, tol_field)
                threshold = tolerance * abs(bm) if relative else tolerance
                noise_from = f"tolerance {tol_field}={tolerance:g}"
            delta = cm - bm
            if abs(delta) <= threshold:
                verdict = "unchanged"
            else:
                verdict = "improved" if (delta > 0) == higher else "regressed"
            verdicts.append(Verdict(cell, name, bm, cm, threshold, noise_from, verdict))
    return verdicts


def write_junit(verdicts: list[Verdict], path: Path) -> None:
    suite = ET.Element("testsuite", name="harness compare", tests=str(len(verdicts)),
                       failures=str(sum(v.verdict == "regressed" for v in verdicts)))
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname=v.cell, name=v.metric)
        detail = (f"baseline {v.baseline:.6g} -> candidate {v.candidate:.6g} (change {v.change:+.6g}, "
                  f"threshold {v.threshold:.6g} from {v.noise_from}): {v.verdict}")
        if v.verdict == "regressed":
            ET.SubElement(case, "failure", message=f"{v.metric} regressed").text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def write_html(verdicts: list[Verdict], baseline: str, candidate: str, out_dir: Path) -> Path:
    return write_page("compare.html.j2", out_dir, verdicts=verdicts, baseline=baseline, candidate=candidate)


def print_verdicts(verdicts: list[Verdict], baseline: str, candidate: str) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    colours = {"improved": "green", "unchanged": "", "regressed": "bold red"}
    table = Table(title=f"compare: {baseline} -> {candidate}", title_justify="left")
    for col in ("cell", "metric", "baseline", "candidate", "change", "threshold", "noise from", "verdict"):
        table.add_column(col, justify="left" if col in ("cell", "metric", "noise from", "verdict") else "right")
    for v in verdicts:
        pct = "" if math.isnan(v.change_pct) else f" ({v.change_pct:+.1f}%)"
        table.add_row(v.cell, v.metric, f"{v.baseline:.4g}", f"{v.candidate:.4g}", f"{v.change:+.4g}{pct}",
                      f"±{v.threshold:.4g}", v.noise_from, f"[{colours[v.verdict]}]{v.verdict}[/]" if colours[v.verdict]
                      else v.verdict)
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)
    counts = {k: sum(v.verdict == k for v in verdicts) for k in colours}
    print(f"{counts['regressed']} regressed, {counts['improved']} improved, {counts['unchanged']} unchanged "
          f"over {len({v.cell for v in verdicts})} cells")


def run_compare(baseline: str, candidate: str, out: str | None, overrides: dict) -> int:
    base_dir, cand_dir = results_folder(baseline), results_folder(candidate)
    base_records, cand_records = RecordStore(base_dir).load_all(), RecordStore(cand_dir).load_all()
    verdicts = compare(base_records, cand_records, tolerances(cand_dir, overrides))
    print_verdicts(verdicts, str(baseline), str(candidate))
    out_dir = Path(out) if out else Path("reports") / "compare" / f"{base_dir.parent.name}-{base_dir.name}__{cand_dir.parent.name}-{cand_dir.name}"
    write_junit(verdicts, out_dir / "junit.xml")
    write_html(verdicts, str(baseline), str(candidate), out_dir)
    print(f"wrote {out_dir / 'index.html'} and {out_dir / 'junit.xml'}")
    return 1 if any(v.verdict == "regressed" for v in verdicts) else 0
