"""Measurement conditions: how busy the host was with other work while a trial ran. Throughput taken
on a shared machine is not the method's: the record says so, the leaderboard marks it and `harness
compare` does not judge speed from it. CPU time of other processes comes from /proc/stat (all CPUs)
less this process's own (os.times); on a GPU, NVML lists the other processes on the device."""

from __future__ import annotations

import os
import time

BUSY_SHARE = 0.10  # above this share of the host's CPU time used by others, speed is "not judged"


def _busy_jiffies() -> int | None:
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal  # steal: taken by the hypervisor for others


def _own_seconds() -> float:
    """CPU seconds of this process, or of every rank of its trial where it is one (RANK is set by torch's
    launcher; the ranks are the children of one trial process and count as the trial's own work)."""
    if "RANK" in os.environ and "LOCAL_WORLD_SIZE" in os.environ:
        import psutil

        try:
            ranks = psutil.Process(os.getppid()).children()
            return sum(sum(p.cpu_times()[:2]) for p in ranks)
        except psutil.Error:
            pass
    t = os.times()
    return t.user + t.system


class HostLoad:
    """Started at a trial's start, read at its end."""

    def __init__(self):
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.cpus = os.cpu_count() or 1
        self.busy0, self.own0, self.wall0 = _busy_jiffies(), _own_seconds(), time.perf_counter()

    def read(self, gpu_handle=None) -> dict:
        wall = time.perf_counter() - self.wall0
        busy = _busy_jiffies()
        out: dict = {"cpu_count": self.cpus, "wall_s": round(wall, 3)}
        if busy is not None and self.busy0 is not None and wall > 0:
            others = max((busy - self.busy0) / self.ticks - (_own_seconds() - self.own0), 0.0)
            out["other_cpu_share"] = round(min(others / (wall * self.cpus), 1.0), 4)
        if gpu_handle is not None:
            out.update(_gpu_others(gpu_handle))
        return out


def _gpu_others(handle) -> dict:
    try:
        import pynvml

        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:  # noqa: BLE001 - no NVML answer: say nothing rather than guess
        return {}
    others = [p for p in procs if p.pid != os.getpid()]
    return {"gpu_other_processes": len(others),
            "gpu_other_used_bytes": sum(int(p.usedGpuMemory or 0) for p in others)}


def busy_share(host: dict) -> float:
    return float(host.get("other_cpu_share") or 0.0)
