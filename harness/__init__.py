"""harness: sweep fine-tuning methods over models and tasks, measure them, and rank them."""

__version__ = "0.1.0"
