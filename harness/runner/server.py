"""The sweep process: a freshly spawned interpreter that runs the sweep loop and forks the trials,
relaying progress to the caller. Spawned, not forked, so it starts clean of any OpenMP thread pool
the caller may have used (forking from such a process can deadlock the child)."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from typing import Any, Callable

from harness.errors import SweepFailed, UserError

from harness.runner.progress import Silent

VIEW_CALLS = tuple(name for name in vars(Silent) if not name.startswith("_"))  # the Progress protocol


class EventSender:
    """Stands in for the progress view inside the sweep process; every call crosses the pipe."""

    def __init__(self, conn):
        self.conn = conn

    def __getattr__(self, name: str):
        if name not in VIEW_CALLS:
            raise AttributeError(name)

        def send(*args):
            if name == "end_trial":
                args = (args[0].model_dump(mode="json"),)
            self.conn.send((name, args))

        return send


def _sweep_process(fn: Callable, args: tuple, conn) -> None:
    try:
        fn(*args, EventSender(conn))
        conn.send(("done", ()))
    except UserError as err:
        conn.send(("user_error", (err.problems,)))
    except BaseException:  # noqa: BLE001 - the caller shows it; records written so far stay
        conn.send(("error", (traceback.format_exc(),)))
    finally:
        conn.close()


def run_in_sweep_process(fn: Callable, args: tuple, view: Any) -> None:
    from harness.records.schema import TrialRecord

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_sweep_process, args=(fn, args, child), name="harness-sweep")
    proc.start()
    child.close()
    outcome = None
    try:
        while True:
            try:
                kind, payload = parent.recv()
            except EOFError:
                break
            if kind == "end_trial":
                view.end_trial(TrialRecord.model_validate(payload[0]))
            elif kind in VIEW_CALLS:
                getattr(view, kind)(*payload)
            else:
                outcome = (kind, payload)
    except KeyboardInterrupt:
        proc.terminate()
        raise
    finally:
        proc.join()
        parent.close()
    if outcome is None:
        raise SweepFailed(f"the sweep process died (exit code {proc.exitcode}); finished trials are kept")
    kind, payload = outcome
    if kind == "user_error":
        raise UserError(payload[0])
    if kind == "error":
        raise SweepFailed(f"the sweep process failed; finished trials are kept:\n{payload[0]}")
