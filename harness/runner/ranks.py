"""A trial over several ranks (runner.distributed: processes > 1), inside its trial process.

torch's elastic launcher (torch.distributed.launcher.api.elastic_launch, the API under `torchrun`)
starts the ranks and watches them: a rank that dies or fails makes it stop every other rank. It runs
here with start_method "fork", so each rank starts with the base model and the training stack the
sweep process loaded (no import or load per rank). Each rank runs the same trial recipe
(harness/runner/trial.py) and trains through the Trainer's own DDP or FSDP2 (distributed_kwargs in
harness/runner/trainer.py); no collective is written here but the one broadcast that carries the
pruner's answer from rank 0 to the others.

Each rank writes its record to the trial's scratch folder; rank 0's is the trial's, with every
rank's memory, step time and energy (records.schema.Distributed): train MiB is the largest rank's,
the median step the slowest rank's, tokens/s over all ranks (the Trainer gathers the token count),
MFU against N GPUs (CPU ranks share one host, whose peak counts once). A rank that exits without its
record (killed, crashed) makes the trial `crashed`, with the rank and its exit named. In-loop
validation (the rungs) runs on every rank in lockstep, as training does; after training the model is
whole on every rank (FSDP gathers its shards once) and rank 0 alone scores validation and test. The
serving profile and retention, which time or compare one model on one device, are not measured for
such a trial (the record says so)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from harness.records.schema import Distributed, RankFigures, TrialRecord
from harness.runner.jobs import TrialJob
from harness.runner.prepare import Prepared
from harness.runner.signals import die_with_parent
from harness.runner.trial import TrialHooks, run_trial

RANK_FILE = "rank-{}.json"


def rank_hooks(rank: int, conn, period_s: float) -> TrialHooks:
    """Rank 0 talks to the sweep (progress, the pruning question); the pruner's answer reaches every
    rank, so all stop at the same rung."""

    last = [0.0]

    def progress(msg: dict) -> None:
        t = time.perf_counter()
        if rank == 0 and (t - last[0] >= period_s or msg.get("step") == msg.get("max_steps")):
            last[0] = t
            conn.send(("progress", msg))

    def should_prune(value: float, step: int) -> bool:
        import torch.distributed as dist

        answer = [None]
        if rank == 0:
            conn.send(("report", (value, step)))
            answer[0] = bool(conn.recv())
        dist.broadcast_object_list(answer, src=0)
        return bool(answer[0])

    return TrialHooks(progress, should_prune)


def _rank_main(job: TrialJob, prepared: Prepared, scratch: str, conn, parent: int, period_s: float) -> None:
    """One rank: the trial recipe, its record to the scratch folder. A rank whose trial ended in a
    failure exits non-zero, so the launcher stops the others (they may be waiting in a collective)."""
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    die_with_parent(signal.SIGKILL, parent)  # never outlive the trial process (the launcher's agent)
    import torch

    if job.device == "cuda":
        torch.cuda.set_device(local)  # before anything measures or allocates: this rank's device
    else:  # the ranks share the host's cores: one share each (oversubscribed threads run many times slower)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.ranks))
    record = run_trial(job, prepared, rank_hooks(rank, conn, period_s))
    Path(scratch, RANK_FILE.format(rank)).write_text(record.model_dump_json(), encoding="utf-8")
    if record.status not in ("complete", "pruned"):
        sys.stdout.flush()
        os._exit(1)


def run_ranks(job: TrialJob, prepared: Prepared, scratch: str, conn, period_s: float) -> TrialRecord:
    """Launch job.ranks ranks of the trial and return the trial's record (rank 0's, with every rank's figures)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=job.ranks, run_id=f"harness-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, start_method="fork",
                          monitor_interval=0.1)
    failure = None
    try:
        elastic_launch(config, _rank_main)(job, prepared, scratch, conn, os.getpid(), period_s)
    except ChildFailedError as exc:
        failure = exc
    records = {}
    for rank in range(job.ranks):
        path = Path(scratch, RANK_FILE.format(rank))
        if path.exists():
            records[rank] = TrialRecord.model_validate_json(path.read_text(encoding="utf-8"))
    return combine(job, records, failure)


def _failure_reason(failure) -> str:
    """Which ranks ended how, from the launcher's account (exit code or signal)."""
    parts = []
    for rank, info in sorted(failure.failures.items()):
        code = info.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        parts.append(f"rank {rank} {how}")
    return "; ".join(parts)


def combine(job: TrialJob, records: dict[int, TrialRecord], failure=None) -> TrialRecord:
    """The trial's record from its ranks' records."""
    from harness.runner.isolation import failure_record
    from harness.runner.record import now

    missing = [r for r in range(job.ranks) if r not in records]
    oom = [r for r, rec in sorted(records.items()) if rec.status == "oom"]
    if missing and oom:  # a rank out of memory is the cause; the launcher then stopped the others (no record)
        rec = records[oom[0]]
        return rec.model_copy(update={"reason": f"rank {oom[0]}: {rec.reason} (the launcher then stopped rank "
                                                f"{', '.join(map(str, missing))})"})
    if missing:
        # the launcher names the first rank it saw fail, which may be one that failed because another died
        told = f"; the launcher saw {_failure_reason(failure)}" if failure is not None else ""
        others = "".join(f"; rank {r} ended {rec.status}: {(rec.reason or '').splitlines()[0][:300]}"
                         for r, rec in sorted(records.items()) if rec.status not in ("complete", "pruned"))
        which = f"rank{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}"
        return failure_record(job, f"{which} of {job.ranks} ended without a record "
                                   f"(killed, crashed or out of host memory){told} and stopped the other ranks"
                                   f"{others}", now())
    # a rank that failed alone (out of memory on one device) decides the status; else rank 0 speaks
    bad = [r for r in range(job.ranks) if records[r].status not in ("complete", "pruned")]
    head = records[bad[0]] if bad else records[0]
    figures = [RankFigures(rank=r, train_bytes=rec.memory.gpu.get("train_peak_allocated_bytes") or rec.memory.train_bytes,
                           peak_bytes=rec.memory.peak_bytes, median_step_s=rec.throughput.median_step_s,
                           train_joules=rec.energy.train_joules) for r, rec in sorted(records.items())]
    measured = [f for f in figures if f.train_bytes is not None]
    largest = max(measured, key=lambda f: f.train_bytes) if measured else None
    slowest = max(figures, key=lambda f: f.median_step_s)
    memory, throughput, energy = head.memory, head.throughput, head.energy
    if largest is not None:  # training's figures from the largest rank; evaluation's from rank 0, which scored
        biggest = records[largest.rank].memory
        memory = biggest.model_copy(update={
            "peak_bytes": max(f.peak_bytes for f in figures), "eval_bytes": head.memory.eval_bytes,
            "by_phase_peak_bytes": {**biggest.by_phase_peak_bytes,
                                    **{k: v for k, v in head.memory.by_phase_peak_bytes.items() if k != "train"}}})
    throughput = throughput.model_copy(update={"median_step_s": slowest.median_step_s})
    joules = [f.train_joules for f in figures if f.train_joules is not None]
    if joules and len(joules) == len(figures):
        total = sum(joules)
        energy = energy.model_copy(update={
            "train_joules": total, "joules_per_1k_tokens": 1000.0 * total / throughput.train_tokens
            if throughput.train_tokens else None,
            "source": energy.source + f"; summed over the {job.ranks} ranks' GPUs"})
    distributed = Distributed(strategy=job.strategy, processes=job.ranks,
                              backend="gloo" if job.device == "cpu" else "nccl", ranks=figures,
                              slowest_rank=slowest.rank, largest_rank=largest.rank if largest else None)
    reason = head.reason if not bad else f"rank {bad[0]}: {head.reason}"
    return head.model_copy(update={"memory": memory, "throughput": throughput, "energy": energy,
                                   "distributed": distributed, "reason": reason})
