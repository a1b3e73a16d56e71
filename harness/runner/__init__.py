"""Plan cells, sweep them with Optuna, run each trial in its own process."""
