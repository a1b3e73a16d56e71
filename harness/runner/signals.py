"""How a stop reaches every process a run started: `harness run` or `harness worker`, its sweep
processes, their trial processes and a distributed trial's ranks.

- SIGTERM (kill, timeout, a scheduler's time limit) does what Ctrl-C does: the first one raises
  KeyboardInterrupt, so the running trial is recorded as interrupted and re-enqueued, and each process
  stops the ones it started.
- A second SIGINT or SIGTERM ends the whole tree at once (SIGKILL to every descendant).
- A sweep process runs in its own process group, so a terminal's Ctrl-C reaches `harness run` alone,
  which passes it on once to each sweep process (a stop arrives once, never twice by two paths).
- Each child asks the kernel for a signal when its parent dies (prctl PR_SET_PDEATHSIG): a sweep
  process whose `harness run` was SIGKILLed gets SIGTERM (and records its trial as interrupted); a
  trial process or rank whose parent died gets SIGKILL. Nothing is left training into a results
  folder after the command that owns it is gone.

Written by hand: neither torch's launcher nor multiprocessing forwards SIGTERM to a tree or ties a
child's life to its parent's (torch's elastic agent does stop its own ranks; the trial process runs it)."""

from __future__ import annotations

import os
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def kill_descendants(sig: int = signal.SIGKILL) -> None:
    """Send sig to every process below this one (children first found, then theirs)."""
    import psutil

    try:
        kids = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for kid in kids:
        try:
            kid.send_signal(sig)
        except psutil.Error:
            continue


received: list[int] = []  # the stop signals this process has had


def stop_on_signals() -> dict:
    """First SIGINT/SIGTERM: KeyboardInterrupt here (a clean, recorded stop); a second one: every
    descendant killed and this process gone, at once. Returns the handlers it replaced (none where
    this is not the main thread, where Python allows no handler)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    received.clear()

    def handler(signum, frame):
        received.append(signum)
        if len(received) > 1:
            kill_descendants()
            os._exit(128 + signum)
        raise KeyboardInterrupt

    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def exit_code() -> int:
    """What a stopped command exits with: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (received[0] if received else signal.SIGINT)


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask the kernel for `sig` when this process's parent exits (Linux; elsewhere nothing). If the
    parent (pid `parent`, default: the one at the call) is already gone, act as if the signal came."""
    expected = os.getppid() if parent is None else parent
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no such call
        return
    if os.getppid() != expected:  # the parent died before the request: nobody will send it
        os.kill(os.getpid(), sig)


def own_process_group() -> None:
    """Leave the terminal's process group: Ctrl-C then reaches the parent alone, which passes it on."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
