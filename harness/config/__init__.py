"""Suite configuration: typed schema, YAML loading with line numbers, and validation."""

from harness.config.loader import load_suite
from harness.spec import Suite

__all__ = ["Suite", "load_suite"]
