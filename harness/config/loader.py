"""Load a suite file and report every problem at once, each with file:line and its YAML path."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.schema import TRAINING_PARAMS, MethodEntry, ModelSpec, ParamSpace, Suite, TaskSpec
from harness.config.yaml_lines import LineMap, read_yaml
from harness.errors import Problem, UserError


@dataclass(frozen=True)
class LoadedSuite:
    suite: Suite
    path: Path
    text: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def _pydantic_problems(exc: ValidationError, lines: LineMap) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif err["type"] == "missing":
            message = f"required key {loc[-1]!r} is missing"
        else:
            message = err["msg"] + (f", but got {err['input']!r}" if err["type"] not in ("value_error",) and not isinstance(err.get("input"), (dict, list)) else "")
            message = message.removeprefix("Value error, ")
        out.append(lines.problem(loc, message))
    return out


def _item(model, raw):
    """Parse one section item on its own, so semantic checks run even if a sibling is broken."""
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _range_problems(path: tuple, dim: ParamSpace, lines: LineMap) -> list[Problem]:
    out = []
    if dim.is_choice:
        if not dim.choices:
            out.append(lines.problem(path + ("choices",), "choices must list at least one value"))
        if dim.low is not None or dim.high is not None:
            out.append(lines.problem(path, "give either choices or low/high, not both"))
        return out
    if dim.low is None or dim.high is None:
        return [lines.problem(path, "a search range needs both low and high (or a list of choices)")]
    if not (math.isfinite(dim.low) and math.isfinite(dim.high)):
        return [lines.problem(path, f"low and high must be finite numbers, but got low={dim.low}, high={dim.high}")]
    if dim.low > dim.high:
        out.append(lines.problem(path + ("low",), f"low <= high must hold, but got low={dim.low}, high={dim.high}"))
    if dim.log and dim.low <= 0:
        out.append(lines.problem(path + ("low",), f"a log range needs low > 0, but got low={dim.low}"))
    return out


def _method_problems(i: int, entry: MethodEntry, model_infos, lines: LineMap,
                     heads=("sequence_classification",)) -> list[Problem]:
    from harness.methods import METHODS

    base = ("methods", i)
    if entry.name not in METHODS:
        return [lines.problem(base + ("name",), METHODS.unknown_message(entry.name))]
    spec = METHODS.get(entry.name)
    known = sorted(set(spec.defaults) | set(TRAINING_PARAMS))
    out = []
    for section in ("params", "search"):
        for key in getattr(entry, section):
            if key not in known:
                import difflib

                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                out.append(lines.problem(base + (section, key),
                                         f"unknown parameter {key!r} for method {entry.name}.{hint} "
                                         f"Valid: {', '.join(known)}"))
    for key, dim in entry.search.items():
        out.extend(_range_problems(base + ("search", key), dim, lines))
    for label, info in model_infos:
        for head in heads:
            reason = spec.check(info, head) if info is not None else None
            if reason:
                out.append(lines.problem(base + ("name",), f"method {entry.name} cannot be used with model {label}: {reason}"))
    return out


def _model_problems(i: int, spec: ModelSpec, base_dir: Path, lines: LineMap) -> list[Problem]:
    from harness.models import BUILTIN_MODELS, is_local, resolve_local

    path = ("models", i, "source")
    if spec.source.startswith("builtin:"):
        name = spec.source.removeprefix("builtin:")
        return [] if name in BUILTIN_MODELS else [lines.problem(path, BUILTIN_MODELS.unknown_message(name))]
    if is_local(spec.source):
        folder = resolve_local(spec, base_dir)
        if not (folder / "config.json").is_file():
            return [lines.problem(path, f"local model folder {folder} has no config.json")]
    return []


def _task_problems(i: int, task: TaskSpec, base_dir: Path, lines: LineMap) -> list[Problem]:
    from harness.tasks import TASKS
    from harness.tasks.data import data_problems

    base = ("tasks", i)
    if task.kind not in TASKS:
        return [lines.problem(base + ("kind",), TASKS.unknown_message(task.kind))]
    family = TASKS.get(task.kind)
    return [lines.problem(base + ("data",) + rel, msg)
            for rel, msg in data_problems(task.data, family.fields, base_dir, tuple(family.optional_fields))]


def _semantic_problems(raw: dict, suite: Suite | None, base_dir: Path, lines: LineMap) -> list[Problem]:
    from harness.models import model_info
    from harness.tasks import TASKS

    out: list[Problem] = []
    models = [(i, _item(ModelSpec, r)) for i, r in enumerate(raw.get("models") or []) if isinstance(r, dict)]
    infos = []
    for i, m in models:
        if m is not None:
            problems = _model_problems(i, m, base_dir, lines)
            out.extend(problems)
            infos.append((m.label, None if problems else model_info(m, base_dir)))
    for i, r in enumerate(raw.get("tasks") or []):
        task = _item(TaskSpec, r) if isinstance(r, dict) else None
        if task is not None:
            out.extend(_task_problems(i, task, base_dir, lines))
    families = [TASKS.get(r["kind"]) for r in raw.get("tasks") or []
                if isinstance(r, dict) and r.get("kind") in TASKS]
    for family in families:
        for label, info in infos:
            if info is not None and family.unsupported(info.is_decoder):
                out.append(lines.problem(("tasks",), f"model {label} cannot run task kind {family.name}: "
                                                     f"{family.unsupported(info.is_decoder)}"))
    for i, r in enumerate(raw.get("methods") or []):
        entry = _item(MethodEntry, r) if isinstance(r, dict) else None
        if entry is None:
            continue
        problems = _method_problems(i, entry, [], lines)
        out.extend(problems)
        if problems:
            continue
        from harness.methods import METHODS

        spec = METHODS.get(entry.name)
        for label, info in infos:
            for head in sorted({f.head_for(info.is_decoder) for f in families} - {None}) if info else ():
                reason = spec.check(info, head)
                if reason:
                    out.append(lines.problem(("methods", i, "name"),
                                             f"method {entry.name} cannot be used with model {label}: {reason}"))
    if suite is not None:
        for i, task in enumerate(suite.tasks):
            metric = task.metric or suite.search.objective.metric
            if task.kind in TASKS and metric is not None and metric not in TASKS.get(task.kind).metrics:
                valid = ", ".join(TASKS.get(task.kind).metrics)
                where = ("tasks", i, "metric") if task.metric else ("search", "objective", "metric")
                out.append(lines.problem(where, f"task {task.name} ({task.kind}) does not report {metric!r}; "
                                                f"it reports {valid}"))
        labels = [e.display for e in suite.methods]
        for i, e in enumerate(suite.methods):
            if labels.count(e.display) > 1 and labels.index(e.display) != i:
                out.append(lines.problem(("methods", i), f"method {e.display!r} is listed twice: give one a label"))
    return out


def check_raw(raw: dict, base_dir: Path, lines: LineMap) -> tuple[Suite | None, list[Problem]]:
    """A suite's mapping, typed and checked: the suite (None where it does not parse) and every problem."""
    suite, problems = None, []
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        problems = _pydantic_problems(exc, lines)
    return suite, problems + _semantic_problems(raw, suite, base_dir, lines)


def load_suite(path: str | Path) -> LoadedSuite:
    """Parse and validate a suite; raise UserError listing every problem found."""
    path = Path(path)
    raw, lines, problems = read_yaml(path)
    if raw is None and not problems:
        problems = [Problem(str(path), None, "", "the file is empty")]
    if problems and raw is None:
        raise UserError(problems)
    if not isinstance(raw, dict):
        raise UserError([Problem(str(path), 1, "", "a suite must be a YAML mapping (name:, models:, tasks:, methods:, ...)")])
    suite, found = check_raw(raw, path.parent, lines)
    problems.extend(found)
    if problems:
        raise UserError(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    return LoadedSuite(suite=suite, path=path.resolve(), text=path.read_text(encoding="utf-8"))
