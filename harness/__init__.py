"""harness: sweep fine-tuning methods over models and tasks, measure them, and rank them."""

__version__ = "0.1.0"


def run(suite, **options):
    """Sweep a suite (a YAML path or a mapping) and return its Results (harness.api.run)."""
    from harness.api import run as _run

    return _run(suite, **options)


def load(results_dir, **options):
    """An existing results set as Results: .leaderboard(), .records(), .compare(other) (harness.api.load)."""
    from harness.api import load as _load

    return _load(results_dir, **options)
