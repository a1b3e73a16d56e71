"""The devices of one machine, leased to trials: `harness run --gpus 0-7` (or `harness worker --gpus`)
starts one worker per device, and each trial takes as many devices as it has ranks (runner.distributed)
for as long as it runs.

A device is held by an exclusive flock on its own lock file in a folder every worker on the machine
shares (HARNESS_DEVICE_LOCKS, default <tmp>/harness-devices-<uid>). The kernel drops a flock when its
holder dies, however it dies, so a killed worker's devices come free at once (its trial's record is
the heartbeat's business, runner/recovery.py).

Deadlock-free and without starvation of large trials: a trial that needs several devices first takes
the machine's "gather" lock (one such trial gathers at a time), then holds each device as it comes free
until it has them all; a one-device trial never waits while holding a device, and takes none while a
gatherer waits (devices that come free go to the gatherer; they may idle until it has them all, the
price of never starving a trial that needs four GPUs behind a stream of one-GPU trials).

Written by hand: torch's launcher starts ranks on devices it is given but does not share a machine's
devices among independent launches, and Optuna's storage shares trials, not devices."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

LOCK_ENV = "HARNESS_DEVICE_LOCKS"
DEVICES_ENV = "HARNESS_DEVICES"  # the pool a worker leases from (set by `harness run/worker --gpus`)
POLL_S = 0.2


def parse_devices(text: str) -> list[str]:
    """'0,1,2,3' or '0-7' or '0-3,6' (or GPU UUIDs) -> the device names, in order, each once."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit():
            if int(high) < int(low):
                raise ValueError(f"{part!r}: a range runs low-high")
            names = [str(i) for i in range(int(low), int(high) + 1)]
        else:
            names = [part]
        out += [n for n in names if n not in out]
    if not out:
        raise ValueError("no device given")
    return out


def lock_folder() -> Path:
    folder = Path(os.environ.get(LOCK_ENV) or Path(tempfile.gettempdir()) / f"harness-devices-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Lease:
    """Devices held by this process until release() (or its death)."""

    def __init__(self, held: dict[str, int]):
        self.held = held

    @property
    def devices(self) -> list[str]:
        return list(self.held)

    def release(self) -> None:
        for fd in self.held.values():
            os.close(fd)  # closing the descriptor drops its flock
        self.held = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class DevicePool:
    def __init__(self, devices: list[str], folder: Path | None = None):
        self.devices, self.folder = list(devices), folder or lock_folder()

    def _try(self, device: str) -> int | None:
        fd = os.open(self.folder / f"device-{device}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _gathering(self) -> bool:
        """Whether a several-device trial is gathering its devices (holds the gather lock)."""
        fd = os.open(self.folder / "gather.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def lease(self, count: int, tick: Callable[[], None] = lambda: None,
              waiting: Callable[[list[str]], None] = lambda held: None) -> Lease:
        """Block until `count` devices of the pool are this process's; tick() while waiting (the claim's
        heartbeat), waiting(held) once a poll found too few."""
        if count > len(self.devices):
            raise ValueError(f"needs {count} devices; this worker's pool has {len(self.devices)} "
                             f"({','.join(self.devices)})")
        held: dict[str, int] = {}
        gather = None
        try:
            if count > 1:  # one gatherer at a time: two half-gathered trials could otherwise wait on each other
                gather = os.open(self.folder / "gather.lock", os.O_RDWR | os.O_CREAT, 0o644)
                while True:
                    try:
                        fcntl.flock(gather, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        tick()
                        time.sleep(POLL_S)
            told = False
            while True:
                if count == 1 and self._gathering():
                    if not told:
                        waiting([])
                        told = True
                    tick()
                    time.sleep(POLL_S)
                    continue
                for device in self.devices:
                    if len(held) == count:
                        break
                    if device not in held and (fd := self._try(device)) is not None:
                        held[device] = fd
                if len(held) == count:
                    return Lease(held)
                if not told:
                    waiting(list(held))
                    told = True
                tick()
                time.sleep(POLL_S)
        except BaseException:
            Lease(held).release()
            raise
        finally:
            if gather is not None:
                os.close(gather)
