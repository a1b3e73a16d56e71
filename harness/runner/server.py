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


def _sweep_process(fn: Callable, args: tuple, kwargs: dict, env: dict, parent: int, conn) -> None:
    import os
    import signal

    from harness.runner.signals import die_with_parent, own_process_group, stop_on_signals

    own_process_group()  # a terminal's Ctrl-C reaches the caller alone, which passes it on once
    stop_on_signals()
    die_with_parent(signal.SIGTERM, parent)  # the caller killed outright: stop as on Ctrl-C
    os.environ.update(env)  # e.g. CUDA_VISIBLE_DEVICES for a worker per GPU, before torch is imported
    from harness.runner.logs import route_from_env

    route_from_env()  # library chatter to the run's log file, before the training stack is imported
    try:
        fn(*args, EventSender(conn), **kwargs)
        conn.send(("done", ()))
    except UserError as err:
        conn.send(("user_error", (err.problems,)))
    except KeyboardInterrupt:
        conn.send(("interrupted", ()))
    except BaseException:  # noqa: BLE001 - the caller shows it; records written so far stay
        conn.send(("error", (traceback.format_exc(),)))
    finally:
        conn.close()


def run_in_sweep_processes(fn: Callable, workers: list[tuple[tuple, dict, dict]], view: Any) -> None:
    """Spawn one sweep process per (args, kwargs, environment) and relay their progress to view;
    Ctrl-C or SIGTERM here reaches each worker as its own KeyboardInterrupt (harness/runner/signals.py), so
    it records its running trial as interrupted before it exits; a second one ends them all at once."""
    import os
    import signal
    from multiprocessing.connection import wait

    from harness.records.schema import TrialRecord

    ctx = mp.get_context("spawn")
    procs, conns = [], {}
    for i, (args, kwargs, env) in enumerate(workers):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_sweep_process, args=(fn, args, kwargs, env, os.getpid(), child), name=f"harness-sweep-{i}")
        proc.start()
        child.close()
        procs.append(proc)
        conns[parent] = proc
    outcomes = {}
    try:
        while conns:
            for conn in wait(list(conns)):
                try:
                    kind, payload = conn.recv()
                except EOFError:
                    conns.pop(conn).join()
                    conn.close()
                    continue
                if kind == "end_trial":
                    view.end_trial(TrialRecord.model_validate(payload[0]))
                elif kind in VIEW_CALLS:
                    getattr(view, kind)(*payload)
                else:
                    outcomes[conns[conn].name] = (kind, payload)
    except KeyboardInterrupt:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)
        for proc in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.terminate()
        raise
    finally:
        for proc in procs:
            proc.join()
    for proc in procs:
        kind, payload = outcomes.get(proc.name, (None, None))
        if kind is None:
            raise SweepFailed(f"a sweep process died (exit code {proc.exitcode}); finished trials are kept")
        if kind == "user_error":
            raise UserError(payload[0])
        if kind == "interrupted":
            raise KeyboardInterrupt
        if kind == "error":
            raise SweepFailed(f"a sweep process failed; finished trials are kept:\n{payload[0]}")
