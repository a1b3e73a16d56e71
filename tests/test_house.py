"""The house stays one-way (../shared/DESIGN.md): the spec at the bottom imports nothing else from
harness; the runner never publishes (no report/ import); the report never runs anything (no runner/
import); the estimate and the runner share the plan (harness/plan.py) and the estimate never
imports the runner. Read from the imports themselves (ast), so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness"


def harness_imports(path: Path) -> set[str]:
    """Every harness module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("harness")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add("harness.<relative>")
    return found


def files(folder: str) -> list[Path]:
    """A folder's modules; "" is spec.py, "plan" is plan.py (single-module rooms)."""
    if folder in ("", "plan"):
        return [PACKAGE / ("plan.py" if folder else "spec.py")]
    return sorted((PACKAGE / folder).rglob("*.py"))


def offenders(folder: str, forbidden) -> dict[str, list[str]]:
    out = {}
    for path in files(folder):
        bad = sorted(m for m in harness_imports(path) if forbidden(m))
        if bad:
            out[str(path.relative_to(PACKAGE))] = bad
    return out


def test_spec_imports_no_other_harness_module():
    assert files("")[0].exists()
    assert offenders("", lambda m: True) == {}


def test_runner_never_imports_report():
    assert files("runner")
    assert offenders("runner", lambda m: m.startswith("harness.report")) == {}


def test_report_never_imports_runner():
    assert files("report")
    assert offenders("report", lambda m: m.startswith("harness.runner")) == {}


def test_estimate_never_publishes():
    # the estimate predicts (the sweep asks it before a trial); the report reads its records
    assert files("estimate")
    assert offenders("estimate", lambda m: m.startswith(("harness.report", "harness.config"))) == {}


def test_estimate_and_runner_do_not_import_each_other():
    # the sweep asks the estimate for predictions (runner -> estimate); the estimate plans from the
    # suite alone, through harness/plan.py, which sits below both
    assert offenders("estimate", lambda m: m.startswith("harness.runner")) == {}
    assert offenders("plan", lambda m: m.startswith(("harness.runner", "harness.estimate", "harness.report",
                                                      "harness.config"))) == {}


def test_registries_sit_below_validation():
    # methods, tasks and models check their own entries; none of them reaches up into config/
    for folder in ("methods", "tasks", "models", "records", "measure"):
        assert offenders(folder, lambda m: m.startswith(("harness.config", "harness.runner", "harness.report"))) == {}, folder


def test_the_check_itself_sees_lazy_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from harness.report.publish import publish\n    import harness.runner.sweep\n")
    assert harness_imports(sample) == {"harness.report.publish", "harness.report.publish.publish",
                                       "harness.runner.sweep"}


def test_only_one_module_reaches_into_optunas_private_attributes():
    # Optuna keeps a study's storage and a trial's id private; runner/optuna_private.py is the one
    # adapter that reads them (and says why), so an Optuna upgrade that renames them changes one file
    private = ("._storage", "._trial_id", "optuna.storages._", "._backend")
    reach = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if any(name in p.read_text(encoding="utf-8") for name in private)}
    assert reach == {"runner/optuna_private.py"}
