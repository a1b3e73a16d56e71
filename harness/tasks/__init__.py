"""The one place task families are registered: every module in this package registers its own."""

from __future__ import annotations

import importlib
import pkgutil

from harness.registry import Registry
from harness.tasks.base import TaskFamily

TASKS: Registry[TaskFamily] = Registry("task kind")
_NOT_TASKS = {"base", "data", "builtin_data", "generative"}


def register(family: TaskFamily) -> TaskFamily:
    return TASKS.register(family.name, family)


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_TASKS:
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["TASKS", "TaskFamily", "register"]
