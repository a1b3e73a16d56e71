"""How much of a multi-worker sweep's wall time is spent inside trials, and what claiming costs per
trial, on PostgreSQL: N workers (1, 2, 4, 8) claim sleep-bound trials of a fixed length through the
harness's own claiming (harness/runner/claims.py: Optuna ask under the budget rule, heartbeats,
tell) and write a record row each (harness/records/pg.py), exactly as `harness worker` does around a
real trial. A sleep stands in for the training, so only the scheduling is measured.

    export HARNESS_TEST_POSTGRES=$(bash tools/start_postgres.sh)
    python benchmarks/workers.py [--trial-s 1.0] [--per-worker 6]"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid


def worker(url: str, study_name: str, suite: str, budget: int, trial_s: float, out, ready, go) -> None:
    import optuna

    from harness.records.pg import PgRecordStore
    from harness.records.synthetic import make_record
    from harness.runner import claims

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = claims.storage(PgRecordStore(url, suite).study_storage_url, 1.0, 30.0, create_lock=url)
    store = PgRecordStore(url, suite)
    study = claims.open_study(study_name, storage, "maximize", optuna.samplers.RandomSampler(seed=os.getpid()),
                              optuna.pruners.NopPruner())
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    overheads, inside = [], 0.0
    ready.release()
    go.wait()  # every worker started (imports, connections): from here on it is scheduling alone
    while True:
        t0 = time.perf_counter()
        got = claims.claim(study, dists, budget)
        if got is None:
            break
        t1 = time.perf_counter()
        beat = claims.heartbeat(study, got.trial, 1.0)
        end = t1 + trial_s
        while time.perf_counter() < end:  # the "trial": a sleep, with heartbeats as a real one has
            beat()
            time.sleep(0.05)
        t2 = time.perf_counter()
        store.write(make_record(suite=suite, method=f"m{got.trial.number}", trial=got.trial.number))
        study.tell(got.trial, got.trial.params["x"])
        overheads.append((t1 - t0) + (time.perf_counter() - t2))
        inside += t2 - t1
    out.put((inside, overheads))


def run(url: str, n: int, per_worker: int, trial_s: float) -> None:
    ctx = mp.get_context("fork")
    queue, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    name = f"bench-{uuid.uuid4().hex[:8]}"
    budget = n * per_worker
    procs = [ctx.Process(target=worker, args=(url, name, name, budget, trial_s, queue, ready, go)) for _ in range(n)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t0 = time.perf_counter()
    go.set()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    inside = sum(r[0] for r in results)
    overheads = [o for r in results for o in r[1]]
    print(f"{n:7d} {budget:6d} {wall:8.2f} {inside / (n * wall):12.1%} {statistics.mean(overheads):14.3f} "
          f"{max(overheads):12.3f} {len(overheads):6d}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trial-s", type=float, default=1.0)
    parser.add_argument("--per-worker", type=int, default=6)
    parser.add_argument("--workers", default="1,2,4,8")
    args = parser.parse_args()
    url = os.environ.get("HARNESS_TEST_POSTGRES")
    if not url:
        sys.exit("set HARNESS_TEST_POSTGRES (bash tools/start_postgres.sh prints one)")
    print(f"trials of {args.trial_s:g} s, {args.per_worker} per worker; wall from the moment every worker has "
          f"started (imports, storage connection) to the last trial's record")
    print(f"{'workers':>7} {'trials':>6} {'wall s':>8} {'in trials':>12} {'claim s/trial':>14} {'max claim s':>12} "
          f"{'ran':>6}")
    for n in map(int, args.workers.split(",")):
        run(url, n, args.per_worker, args.trial_s)


if __name__ == "__main__":
    main()
