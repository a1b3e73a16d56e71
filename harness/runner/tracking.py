"""A trial's runs in the experiment trackers a suite names (`tracking: {report_to: [...]}`), all
under results/<suite>/tracking, so that nothing needs a network.

- TensorBoard and W&B (offline mode): step metrics (loss, learning rate, grad norm) through the
  Trainer's own integrations (transformers' TensorBoardCallback, WandbCallback) inside the trial,
  one run per trial grouped by cell; the final figures at the trial's end with their own clients.
- MLflow (a SQLite store: MLflow 3's file store is read-only): written by the sweep process from
  each trial's record, its step history, parameters and final figures, one run per trial in one
  experiment per suite, tagged with its cell. Its store takes ~1 s to open; the sweep opens it
  once, a trial process never does.
What the Trainer does not know (parameters, validation and test scores, memory, tokens/s, MFU,
energy) comes from the record. The seconds spent in all of it, callbacks included, are counted in
record.timing.tracking_s. Without `tracking` nothing here runs."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

INTEGRATIONS = {"tensorboard": "TensorBoardCallback", "wandb": "WandbCallback"}  # run inside the trial


def figures(record) -> dict[str, float]:
    """What a tracker gets at a trial's end: validation and test scores, memory, speed, energy."""
    out = {f"validation_{k}": v for k, v in record.validation_metrics.items()}
    out.update({f"test_{k}": v for k, v in record.metrics.items()})
    out.update(train_mib=(record.memory.train_bytes or 0) / 2**20, train_s=record.timing.train_s,
               train_tokens_per_s=record.throughput.train_tokens_per_s, trainable_params=record.trainable_params)
    if record.throughput.mfu is not None:
        out["mfu"] = record.throughput.mfu
    if record.energy.train_joules is not None:
        out["train_joules"] = record.energy.train_joules
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and v == v}


def run_name(record) -> str:
    return f"{record.cell_id}/{record.phase}-trial-{record.trial_number:04d}-seed-{record.seed}"


def _mlflow_client(root: str):
    import mlflow

    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{(folder / 'mlflow.db').resolve()}")


def prepare_mlflow(root: str, suite: str) -> None:
    """Create the store and the suite's experiment once, in the sweep process before any trial
    (the SQLite store's first opening runs MLflow's migrations, ~1 s)."""
    client = _mlflow_client(root)
    if client.get_experiment_by_name(suite) is None:
        client.create_experiment(suite)


def log_to_mlflow(record, root: str) -> float:
    """One MLflow run for a finished trial record (any status); the seconds it took."""
    t0 = time.perf_counter()
    from mlflow.entities import Metric, Param

    client = _mlflow_client(root)
    experiment = client.get_experiment_by_name(record.suite)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(record.suite)
    run = client.create_run(experiment_id, run_name=run_name(record), tags={
        "harness.suite": record.suite, "harness.cell": record.cell_id, "harness.method": record.method,
        "harness.phase": record.phase, "harness.seed": str(record.seed), "harness.status": record.status})
    stamp = int(time.time() * 1000)
    metrics = [Metric(key, float(value), stamp, int(entry["step"])) for entry in record.history
               for key, value in entry.items() if key != "step" and isinstance(value, (int, float)) and value == value]
    if record.status == "complete":
        metrics += [Metric(key, value, stamp, record.throughput.train_steps) for key, value in figures(record).items()]
    params = [Param(str(k)[:250], str(v)[:6000]) for k, v in record.params.items()]
    for start in range(0, max(len(metrics), 1), 1000):  # log_batch takes up to 1000 metrics a call
        client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000], params=params if start == 0 else [])
    client.set_terminated(run.info.run_id, "FINISHED" if record.status == "complete" else "FAILED")
    return time.perf_counter() - t0


class Tracking:
    """One trial's tracker runs; every call is timed into `seconds`."""

    def __init__(self, report_to: list[str], root: str, suite: str, cell: str, run_name: str):
        self.report_to, self.root, self.suite, self.cell = list(report_to), Path(root), suite, cell
        self.run_name = run_name
        self.seconds = 0.0
        self._saved_env: dict[str, str | None] = {}

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tensorboard" / self.cell / self.run_name

    @contextmanager
    def timed(self):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def _set_env(self, **values: str) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def start(self) -> None:
        """Point the Trainer's integrations at this trial's files."""
        with self.timed():
            if "tensorboard" in self.report_to:
                self.tensorboard_dir.mkdir(parents=True, exist_ok=True)
                self._set_env(TENSORBOARD_LOGGING_DIR=str(self.tensorboard_dir))
            if "wandb" in self.report_to:
                self._set_env(WANDB_MODE="offline", WANDB_DIR=str(self.root), WANDB_PROJECT=self.suite,
                              WANDB_RUN_GROUP=self.cell, WANDB_NAME=f"{self.cell}/{self.run_name}")

    def time_callbacks(self, trainer) -> None:
        """Wrap the Trainer's tracker callbacks so their time counts into `seconds`."""
        names = {INTEGRATIONS[name] for name in self.report_to if name in INTEGRATIONS}
        for callback in trainer.callback_handler.callbacks:
            if type(callback).__name__ in names:
                for attr in dir(callback):
                    if attr.startswith("on_") and callable(getattr(callback, attr)):
                        setattr(callback, attr, self._timing(getattr(callback, attr)))

    def _timing(self, fn):
        def timed(*args, **kwargs):
            with self.timed():
                return fn(*args, **kwargs)

        return timed

    def finish(self, record) -> None:
        """The trial's parameters and final figures into its TensorBoard and W&B runs."""
        with self.timed():
            final, params = figures(record), record.params
            if "tensorboard" in self.report_to:
                from torch.utils.tensorboard import SummaryWriter

                with SummaryWriter(log_dir=str(self.tensorboard_dir)) as writer:
                    for key, value in final.items():
                        writer.add_scalar(f"final/{key}", value, record.throughput.train_steps)
                    writer.add_text("params", "\n".join(f"{k}: {v}" for k, v in sorted(params.items())))
            if "wandb" in self.report_to:
                import wandb

                if wandb.run is not None:
                    wandb.run.summary.update(final)
                    wandb.run.config.update({f"harness.{k}": v for k, v in params.items()}, allow_val_change=True)
                    wandb.finish()

    def close(self) -> None:
        """The environment as it was (inline trials share the sweep process's)."""
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
