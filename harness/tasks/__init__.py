"""The one place task families are registered: every module in this package registers its own."""

from __future__ import annotations

import importlib
import pkgutil

from harness.registry import Registry
from harness.tasks.base import TaskFamily

TASKS: Registry[TaskFamily] = Registry("task kind")
_NOT_TASKS = {"base", "data", "builtin_data", "generative", "heads"}


def register(family: TaskFamily) -> TaskFamily:
    from harness.tasks.heads import HEADS

    for head in family.heads:
        HEADS.get(head)  # a family names only registered heads
    return TASKS.register(family.key, family)


def family_for(task) -> TaskFamily:
    """The family a suite's task entry names (its kind, head and objective)."""
    return family_of(task.kind, task.head, getattr(task, "objective", None))


def family_of(kind: str, head: str | None = None, objective: str | None = None) -> TaskFamily:
    """The family a task entry names: its kind, and its head where the kind has variants
    (classification with head: verbalizer) or its objective (preference: reward, dpo, ...).
    KeyError with the valid choices otherwise."""
    if "/" in kind or kind not in TASKS:
        raise KeyError(TASKS.unknown_message(kind, [n for n in TASKS.names() if "/" not in n]))
    default = TASKS.get(kind)
    objectives = {TASKS.get(k).objective for k in TASKS.names() if k.split("/")[0] == kind} - {None}
    if objective is not None or objectives:
        if objective is None or objective == default.objective:
            return default
        if objective not in objectives:
            valid = f"valid: {', '.join(sorted(objectives))}" if objectives else "it takes none"
            raise KeyError(f"task kind {kind} has no objective {objective!r}; {valid}")
        return TASKS.get(f"{kind}/{objective}")
    if head is None or head in default.heads:
        return default
    if f"{kind}/{head}" in TASKS:
        return TASKS.get(f"{kind}/{head}")
    variants = sorted(default.heads | {k.split("/", 1)[1] for k in TASKS.names() if k.startswith(kind + "/")})
    raise KeyError(f"task kind {kind} has no head {head!r}; valid: {', '.join(variants)}")


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_TASKS:
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["TASKS", "TaskFamily", "family_for", "family_of", "register"]
