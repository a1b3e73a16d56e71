"""Run a trial in its own process, forked from the sweep process after the heavy imports and the
base model are loaded: the ~13 s import cost and the model load are paid once per sweep, each
trial's peak memory is its own, and a crash (segfault, SIGKILL, OOM kill) becomes a record."""

from __future__ import annotations

import gc
import multiprocessing as mp
import signal
import time
from harness.records.schema import TrialRecord
from harness.runner.prepare import Prepared
from harness.runner.trial import TrialHooks, TrialJob, now, run_trial


def _child(job: TrialJob, prepared: Prepared, conn) -> None:
    def should_prune(value: float, step: int) -> bool:
        conn.send(("report", (value, step)))
        return bool(conn.recv())

    try:
        record = run_trial(job, prepared, TrialHooks(lambda msg: conn.send(("progress", msg)), should_prune))
        conn.send(("record", record.model_dump(mode="json")))
    finally:
        conn.close()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def crashed_record(job: TrialJob, reason: str, started: str) -> TrialRecord:
    return TrialRecord.model_validate(dict(job.record_base, trial_number=job.trial_number, seed=job.seed,
                                           params=job.params, status="crashed", reason=reason,
                                           started_at=started, finished_at=now()))


def run_isolated(job: TrialJob, prepared: Prepared, hooks: TrialHooks,
                 timeout_s: float | None = None) -> TrialRecord:
    """Fork, run the trial, and collect its record; a child that dies yields a 'crashed' record."""
    ctx = mp.get_context("fork")
    # Move every object the sweep process has so far into the permanent generation: the child's
    # gc.collect() (accelerate calls it) then skips them instead of walking, and copying, them all.
    gc.freeze()
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    started, t0 = now(), time.perf_counter()
    proc = ctx.Process(target=_child, args=(job, prepared, child_conn), daemon=True)
    proc.start()
    child_conn.close()
    record: TrialRecord | None = None
    timed_out = False
    try:
        while True:
            if parent_conn.poll(0.1):
                try:
                    kind, payload = parent_conn.recv()
                except EOFError:
                    break
                if kind == "progress":
                    hooks.progress(payload)
                elif kind == "report":
                    parent_conn.send(hooks.should_prune(*payload))
                else:
                    record = TrialRecord.model_validate(payload)
            elif not proc.is_alive() and not parent_conn.poll(0):
                break
            if timeout_s is not None and time.perf_counter() - t0 > timeout_s and proc.is_alive():
                proc.kill()
                timed_out = True
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent_conn.close()
    if record is None:
        code = proc.exitcode
        if timed_out:
            reason = f"timed out after {timeout_s:g} s (trial_timeout_s) and was killed"
        elif code is not None and code < 0:
            reason = f"trial process killed by {_signal_name(-code)}"
            if -code == signal.SIGKILL:
                reason += " (the kernel's out-of-memory killer sends this too)"
        else:
            reason = f"trial process exited with code {code} before writing its record"
        record = crashed_record(job, reason, started)
    record.timing.total_s = time.perf_counter() - t0
    return record


def run_inline(job: TrialJob, prepared: Prepared, hooks: TrialHooks) -> TrialRecord:
    """Same trial in this process (runner.isolation: inline), for debugging with a debugger."""
    t0 = time.perf_counter()
    record = run_trial(job, prepared, hooks)
    record.timing.total_s = time.perf_counter() - t0
    return record
