"""The training stack, imported and quieted once per sweep (or bench) process, so that trial
processes forked from it start warm: the ~13 s import of transformers + peft + bitsandbytes is paid
once, never per trial."""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    """No progress bars from the libraries; their warnings go to the run's log file where the runner
    routed them (runner/logs.py), and are silenced where it did not (runner.isolation: inline)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # fork-safe tokenizers
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # is_available() without a CUDA context
    import warnings

    import optuna
    import transformers

    from harness.runner.logs import LOG_ENV, VERBOSE_ENV

    transformers.logging.disable_progress_bar()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if os.environ.get(LOG_ENV) or os.environ.get(VERBOSE_ENV):
        return
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def preload(report_to: list[str] = ()) -> None:
    """Import, in the sweep process, everything a trial touches, so forked trials start warm (the
    trackers a suite names included: mlflow and tensorboard take ~5 s to import)."""
    if "tensorboard" in report_to:
        import torch.utils.tensorboard  # noqa: F401
        import transformers.integrations.integration_utils  # noqa: F401
    if "mlflow" in report_to:
        import mlflow  # noqa: F401
    import peft  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch.optim  # noqa: F401
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments  # noqa: F401

    _cache_lomo_check()
    from harness.measure.flops import cpu_matmul_peak

    cpu_matmul_peak()  # timed once here, on a quiet process; forked trials inherit the figure


def _cache_lomo_check() -> None:
    """accelerate's AcceleratedOptimizer.step asks is_lomo_available() twice per optimizer step,
    and each answer is an importlib find_spec scan of sys.path: ~0.5 ms of file-system lookups per
    step, 5% of a small model's step in `harness bench`. Whether lomo_optim is installed cannot
    change during a sweep, so the answer is computed once."""
    import functools

    import accelerate.optimizer

    check = accelerate.optimizer.is_lomo_available
    if not hasattr(check, "cache_info"):
        accelerate.optimizer.is_lomo_available = functools.lru_cache(maxsize=None)(check)
