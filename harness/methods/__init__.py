"""The one place methods are registered: every module in this package registers its own.

Adding a method: a module here (its family's file, or a new one) calls `register(MethodSpec(...))`;
tests/test_methods.py gets one line in TRAINS. docs/extending.md says more."""

from __future__ import annotations

import importlib
import pkgutil

from harness.methods.base import ApplyContext, MethodSpec, ModelInfo
from harness.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method")


def register(spec: MethodSpec) -> MethodSpec:
    return METHODS.register(spec.name, spec)


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("base", "artifacts"):
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["METHODS", "ApplyContext", "MethodSpec", "ModelInfo", "register"]
