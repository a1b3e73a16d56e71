"""Run a trial in its own process, forked from the sweep process after the heavy imports and the
base model are loaded: the ~13 s import cost and the model load are paid once per sweep, each
trial's peak memory is its own, and a crash (segfault, SIGKILL, OOM kill) becomes a record.

Plain os.fork + os.wait4 rather than multiprocessing.Process: wait4 hands back the kernel's own
resource accounting of the trial process (ru_maxrss), which every record carries as a cross-check."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
import tempfile
import time
from multiprocessing.connection import Pipe

from harness.records.schema import TrialRecord
from harness.runner.prepare import Prepared
from harness.runner.jobs import TrialJob
from harness.runner.record import RecordBuilder, now
from harness.runner.signals import die_with_parent
from harness.runner.trial import TrialHooks, run_trial

PROGRESS_PERIOD_S = 0.25  # how often a trial process reports its step to the sweep process


def _limit_address_space(extra_mib: int) -> None:
    """Cap this (trial) process's virtual memory at its size now plus extra_mib: an allocation past it
    fails as the CPU allocator's out-of-memory error, which the trial records as `oom`. The free heap
    inherited from the sweep process is handed back first (the trial's memory measurement does the
    same), so the cap does not grow by what the trial gives back later."""
    import resource

    from harness.measure.memory import release_free_heap

    release_free_heap()
    with open("/proc/self/status", encoding="utf-8") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_mib * 2**20, resource.RLIM_INFINITY))


def _child(job: TrialJob, prepared: Prepared, scratch: str, conn) -> None:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    # torch.compile's cache stays where it was (under the system temp folder), shared by every trial
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache_dir())
    tempfile.tempdir = scratch  # every temp file of the trial (Trainer output, retention's snapshot) goes here
    if job.devices:  # the worker's lease: CUDA numbers these 0..N-1 here, one per rank (before CUDA starts)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(job.devices)
    def should_prune(value: float, step: int) -> bool:
        conn.send(("report", (value, step)))
        return bool(conn.recv())

    last = [0.0]

    def progress(msg: dict) -> None:
        # A few messages a second are enough for the progress bar; one per step would wake the
        # sweep process every few milliseconds on a small model, on a machine with few cores.
        t = time.perf_counter()
        if t - last[0] >= PROGRESS_PERIOD_S or msg.get("step") == msg.get("max_steps"):
            last[0] = t
            conn.send(("progress", msg))

    if job.memory_limit_mib and job.device == "cpu":
        _limit_address_space(job.memory_limit_mib)
    if job.ranks > 1:  # torch's launcher forks the ranks from here (harness/runner/ranks.py)
        from harness.runner.ranks import run_ranks

        record = run_ranks(job, prepared, scratch, conn, PROGRESS_PERIOD_S)
    else:
        record = run_trial(job, prepared, TrialHooks(progress, should_prune))
    conn.send(("record", record.model_dump(mode="json")))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def failure_record(job: TrialJob, reason: str, started: str, status: str = "crashed") -> TrialRecord:
    """The record of a trial that produced none of its own (its process died, or it never started)."""
    return RecordBuilder(**job.record_base, trial_number=job.trial_number, seed=job.seed, params=job.params,
                         status=status, reason=reason, started_at=started, finished_at=now()).build()


def fork_call(target, *args) -> tuple[int, object]:
    """Fork; the child runs target(*args, conn) and exits without running the parent's cleanup."""
    parent_conn, child_conn = Pipe(duplex=True)
    # Move every object the sweep process has so far into the permanent generation: the child's
    # gc.collect() (accelerate calls it) then skips them instead of walking, and copying, them all.
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the trial process
        code = 0
        try:
            die_with_parent(signal.SIGKILL, parent)  # a trial never outlives its sweep process
            parent_conn.close()
            target(*args, child_conn)
        except BaseException:  # noqa: BLE001 - report and die; the parent records the exit code
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            try:
                child_conn.close()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    child_conn.close()
    return pid, parent_conn


def run_isolated(job: TrialJob, prepared: Prepared, hooks: TrialHooks,
                 timeout_s: float | None = None) -> TrialRecord:
    """Fork, run the trial, and collect its record; a child that dies yields a 'crashed' record."""
    started, t0 = now(), time.perf_counter()
    # The trial's temp files live in a folder this process owns and removes once the child is gone: a child
    # that is killed, or that ends in os._exit, runs no cleanup of its own.
    scratch = tempfile.mkdtemp(prefix="harness-trial-scratch-")
    pid, conn = fork_call(_child, job, prepared, scratch)
    record: TrialRecord | None = None
    timed_out = False
    try:
        while True:
            hooks.tick()
            if conn.poll(0.1):
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    break  # the child closed its end: it finished or died
                if kind == "progress":
                    hooks.progress(payload)
                elif kind == "report":
                    conn.send(hooks.should_prune(*payload))
                else:
                    record = TrialRecord.model_validate(payload)
            if timeout_s is not None and not timed_out and time.perf_counter() - t0 > timeout_s:
                os.kill(pid, signal.SIGKILL)
                timed_out = True
    except KeyboardInterrupt:
        os.kill(pid, signal.SIGKILL)  # the trial stops with its worker; wait4 below then returns at once
        raise
    finally:
        conn.close()
        _, status, usage = os.wait4(pid, 0)
        shutil.rmtree(scratch, ignore_errors=True)
    if record is None:
        code = os.waitstatus_to_exitcode(status)
        if timed_out:
            reason = f"ran past runner.trial_timeout_s ({timeout_s:g} s) and was stopped"
        elif code < 0:
            reason = f"trial process killed by {_signal_name(-code)}"
            if -code == signal.SIGKILL:
                reason += " (the kernel's out-of-memory killer sends this too)"
        else:
            reason = f"trial process exited with code {code} before writing its record"
        record = failure_record(job, reason, started, status="timeout" if timed_out else "crashed")
    record.timing.total_s = time.perf_counter() - t0
    record.memory.kernel_max_rss_bytes = usage.ru_maxrss * 1024  # Linux reports KiB
    return record


def run_inline(job: TrialJob, prepared: Prepared, hooks: TrialHooks) -> TrialRecord:
    """Same trial in this process (runner.isolation: inline), for debugging with a debugger."""
    t0 = time.perf_counter()
    record = run_trial(job, prepared, hooks)
    record.timing.total_s = time.perf_counter() - t0
    return record
