"""Trials over several ranks (runner.distributed): the suite's settings, the per-rank record, the
estimate per rank, the devices a worker leases, and on CPU with gloo: DDP with LoRA and FSDP with full
fine-tuning trained on 2 ranks to the same losses as one process, FSDP's per-rank memory below one
process's, and a killed rank ending the trial as crashed with no process left."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness.cli import main
from harness.records.store import FileRecordStore

BASE = """\
name: {name}
models: [{{source: {model}, max_length: 48}}]
tasks: [{{name: chat, kind: summarization, data: {{builtin: dialogsum-mini, train_size: 64, test_size: 8}}}}]
methods:
{methods}
search: {{sampler: none}}
training: {{max_steps: {steps}, batch_size: 8, eval_batch_size: 8}}
references: false
serving: {{enabled: false}}
retention: {{enabled: false}}
"""


def _suite(write_suite, methods: str, name: str = "dist", steps: int = 6, model: str = "'builtin:tiny-llama'",
           extra: str = ""):
    return write_suite(BASE.format(name=name, methods=methods, steps=steps, model=model) + extra)


# ---- the suite's settings ----

def test_distributed_settings_merge_per_method_and_split_the_effective_batch(write_suite):
    from harness.config import load_suite
    from harness.plan import plan
    from harness.runner.jobs import make_job

    path = _suite(write_suite, "  - {name: full, distributed: {processes: 4, strategy: fsdp}}\n  - {name: lora}",
                  extra="runner: {distributed: {strategy: ddp}}\n")
    loaded = load_suite(path)
    full, lora = plan(loaded.suite)
    assert (full.distributed.processes, full.distributed.strategy) == (4, "fsdp")
    assert (lora.distributed.processes, lora.distributed.strategy) == (1, "ddp")
    job = make_job(loaded, full, trial_number=0, seed=0, device="cpu", suite_hash="x")
    # 4 ranks x micro-batch 2 x accumulation 1 = the suite's batch of 8, as on one device
    assert (job.ranks, job.training.micro_batch, job.training.accumulation) == (4, 2, 1)
    one = make_job(loaded, lora, trial_number=0, seed=0, device="cpu", suite_hash="x")
    assert (one.ranks, one.training.micro_batch, one.training.accumulation) == (1, 8, 1)


@pytest.mark.parametrize("methods, extra, words", [
    ("  - {name: full, distributed: {processes: 3}}", "", "batch_size must be a multiple of 3"),
    ("  - {name: full, distributed: {processes: 2}}", "runner: {isolation: inline}\n", "runner.isolation: process"),
    ("  - {name: full, distributed: {processes: auto}}", "", "set strategy: fsdp"),
    ("  - {name: full, distributed: {processes: 2, strategy: zero3}}", "", "strategy"),
    # bitsandbytes' optimizers cannot step sharded parameters; LLM.int8 weights do not survive sharding
    ("  - {name: qlora, distributed: {processes: 2, strategy: fsdp}}", "", "set params: {optim: adamw_torch}"),
    ("  - {name: full, params: {optim: adamw_8bit}, distributed: {processes: auto, strategy: fsdp}}", "",
     "optimizer adamw_8bit (bitsandbytes)"),
    ("  - {name: lora_8bit, params: {optim: adamw_torch}}", "runner: {distributed: {processes: 2, strategy: fsdp}}\n",
     "lora_8bit cannot train under strategy: fsdp"),
    ("  - {name: adalora, distributed: {processes: 2, strategy: fsdp}}", "",
     "adalora cannot train under strategy: fsdp"),
])
def test_bad_distributed_settings_are_clean_errors(write_suite, capsys, methods, extra, words):
    path = _suite(write_suite, methods, extra=extra)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and "distributed" in err


# ---- the record of a trial over several ranks ----

def test_a_v15_record_reads_as_one_process_on_no_lease():
    from harness.records.schema import SCHEMA_VERSION, TrialRecord, upgrade
    from harness.records.synthetic import make_record

    data = make_record().model_dump(mode="json")
    data["schema_version"] = 15
    data.pop("distributed")
    data.pop("devices")
    record = TrialRecord.model_validate(upgrade(data))
    assert SCHEMA_VERSION == 16 and record.distributed is None and record.devices is None


def _rank_record(rank: int, train_mib: float, step_s: float, status: str = "complete"):
    from harness.records.synthetic import make_record

    r = make_record(peak_mib=train_mib, status=status, reason=None if status == "complete" else "oops")
    r.throughput.median_step_s = step_s
    return r


def test_a_trial_s_record_is_rank_0_s_with_the_largest_memory_and_slowest_step(tmp_path):
    from harness.runner.ranks import combine

    job = _job(tmp_path, ranks=2, strategy="fsdp")
    rank0, rank1 = _rank_record(0, 300, 0.10), _rank_record(1, 340, 0.12)
    rank1.memory.eval_bytes, records0_eval = None, rank0.memory.eval_bytes  # rank 1 trained, never scored
    record = combine(job, {0: rank0, 1: rank1})
    d = record.distributed
    assert (d.strategy, d.processes, d.backend, d.largest_rank, d.slowest_rank) == ("fsdp", 2, "gloo", 1, 1)
    assert record.memory.train_bytes == 340 * 2**20 and record.throughput.median_step_s == 0.12
    assert record.memory.eval_bytes == records0_eval  # evaluation: rank 0's, which scored
    assert [f.train_bytes for f in d.ranks] == [300 * 2**20, 340 * 2**20]


def test_a_rank_without_a_record_makes_the_trial_crashed_naming_the_rank(tmp_path):
    from types import SimpleNamespace

    from harness.runner.ranks import combine

    job = _job(tmp_path, ranks=2, strategy="ddp")
    failure = SimpleNamespace(failures={1: SimpleNamespace(exitcode=-signal.SIGKILL)})
    record = combine(job, {0: _rank_record(0, 300, 0.1)}, failure)
    assert record.status == "crashed" and "rank 1 of 2 ended without a record" in record.reason
    assert "the launcher saw rank 1 killed by SIGKILL" in record.reason
    failed = combine(job, {0: _rank_record(0, 300, 0.1), 1: _rank_record(1, 300, 0.1, status="oom")})
    assert failed.status == "oom" and failed.reason.startswith("rank 1: ")
    # out of memory on rank 1, and rank 0 stopped by the launcher before its record: still oom (the backoff reads it)
    stopped = combine(job, {1: _rank_record(1, 300, 0.1, status="oom")}, failure)
    assert stopped.status == "oom" and "rank 1: oops (the launcher then stopped rank 0)" == stopped.reason


def _job(tmp_path, ranks: int, strategy: str):
    from harness.config import load_suite
    from harness.plan import plan
    from harness.runner.jobs import make_job

    path = tmp_path / "j.yaml"
    path.write_text(BASE.format(name="j", model="'builtin:tiny-llama'", steps=4, methods=(
        f"  - {{name: full, distributed: {{processes: {ranks}, strategy: {strategy}}}}}")), encoding="utf-8")
    loaded = load_suite(path)
    return make_job(loaded, plan(loaded.suite)[0], trial_number=0, seed=0, device="cpu", suite_hash="x")


# ---- the estimate per rank ----

def test_fsdp_divides_what_a_rank_holds_and_ddp_adds_its_buckets():
    from harness.estimate import Target, estimate
    from harness.methods import METHODS
    from harness.spec import TrialTraining
    from tests.test_estimate import llama_config
    from harness.tasks.heads import HEADS

    target = Target("cuda", 80 * 2**30, 1e15, "test", "H100")
    full = METHODS.get("full")

    def predict(processes: int, strategy: str):
        return estimate("c", full, {}, TrialTraining(batch_size=8, micro_batch_size=4, ranks=processes),
                        config=llama_config(), head=HEADS.get("causal_lm"), num_labels=2, seq_len=64,
                        dtype="float32", target=target, micro_batch=4, find_max=False, processes=processes,
                        strategy=strategy)

    one, fsdp, ddp = predict(1, "fsdp"), predict(4, "fsdp"), predict(4, "ddp")
    for key in ("weights", "optimizer_states"):
        assert fsdp.parts[key] == -(-one.parts[key] // 4)
    assert fsdp.parts["fsdp_gathered"] > 0 and fsdp.predicted_peak_bytes < one.predicted_peak_bytes
    assert ddp.parts["ddp_buckets"] == pytest.approx(one.parts["weights"], abs=1024)  # every gradient, again (weights: + buffers)
    assert ddp.predicted_peak_bytes == one.predicted_peak_bytes + ddp.parts["ddp_buckets"]
    assert one.min_processes == 1
    small = Target("cuda", one.predicted_peak_bytes + 512 * 2**20 - 1, 1e15, "test", "H100")  # just too small
    tight = estimate("c", full, {}, TrialTraining(batch_size=8, micro_batch_size=4), config=llama_config(),
                     head=HEADS.get("causal_lm"), num_labels=2, seq_len=64, dtype="float32", target=small,
                     micro_batch=4, find_max=False)
    assert tight.fits is False and tight.min_processes == 2
    assert fsdp.predicted_tokens_per_s == pytest.approx(4 * one.predicted_tokens_per_s)  # four GPUs, four devices' peak


def test_cpu_ranks_share_one_host_s_peak_in_the_throughput_estimate():
    """Ranks on a CPU split the host's cores: two ranks promise no more tokens/s than one process (the
    measured trial was slower still: gloo's collectives), where two GPUs promise twice one."""
    from harness.estimate import Target, estimate
    from harness.methods import METHODS
    from harness.spec import TrialTraining
    from harness.tasks.heads import HEADS
    from tests.test_estimate import llama_config

    host = Target("cpu", 16 * 2**30, 1e11, "CPU float32 matmul timed on this host: 100 GFLOP/s", None)

    def predict(processes: int):
        return estimate("c", METHODS.get("full"), {}, TrialTraining(batch_size=8, micro_batch_size=4,
                                                                    ranks=processes),
                        config=llama_config(), head=HEADS.get("causal_lm"), num_labels=2, seq_len=64,
                        dtype="float32", target=host, micro_batch=4, find_max=False, processes=processes,
                        strategy="fsdp")

    one, two = predict(1), predict(2)
    assert one.predicted_tokens_per_s and two.predicted_tokens_per_s == pytest.approx(one.predicted_tokens_per_s)
    assert any("shared by the 2 ranks" in a for a in two.assumptions)


# ---- devices leased per trial ----

def test_parse_devices():
    from harness.runner.leases import parse_devices

    assert parse_devices("0-3") == ["0", "1", "2", "3"]
    assert parse_devices("0,2, 5-6,2") == ["0", "2", "5", "6"]
    with pytest.raises(ValueError):
        parse_devices("3-1")


def test_the_lease_plan_of_gpus_0_7_with_full_on_4_and_lora_on_1(tmp_path):
    """docs/distributed.md's sketch, with fake devices: 8 workers share 8 devices; full fine-tuning's
    trials take 4 at once, LoRA's 1; no device is ever held twice, the 4-device trials are not starved by
    the stream of 1-device ones, and every lease is returned."""
    from harness.runner.leases import DevicePool

    pool_devices = [str(i) for i in range(8)]
    held: dict[str, str] = {}
    lock = threading.Lock()
    log: list[tuple[str, list[str]]] = []
    errors: list[str] = []
    work = [("full", 4)] * 3 + [("lora", 1)] * 12

    def worker(i: int):
        pool = DevicePool(pool_devices, tmp_path)
        while True:
            with lock:
                if not work:
                    return
                name, need = work.pop(0)
            with pool.lease(need) as lease:
                with lock:
                    for d in lease.devices:
                        if d in held:
                            errors.append(f"device {d} held by {held[d]} and {name}")
                        held[d] = name
                    log.append((name, lease.devices))
                time.sleep(0.05 if need == 1 else 0.15)
                with lock:
                    for d in lease.devices:
                        held.pop(d)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not held and not any(t.is_alive() for t in threads)
    assert sorted(len(d) for _, d in log) == [1] * 12 + [4] * 3
    with DevicePool(pool_devices, tmp_path).lease(8) as everything:  # every lease came back
        assert everything.devices == pool_devices


@pytest.mark.e2e
def test_a_dead_holder_s_devices_come_free(tmp_path):
    """A lease is a flock: the kernel drops it with its holder, however the holder dies."""
    from harness.runner.leases import DevicePool

    code = (f"import sys, time; sys.path.insert(0, {str(os.getcwd())!r}); from harness.runner.leases import DevicePool;"
            f"from pathlib import Path; l = DevicePool(['0', '1'], Path({str(tmp_path)!r})).lease(2);"
            f"print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        pool = DevicePool(["0", "1"], tmp_path)
        assert pool._try("0") is None
        holder.kill()
        holder.wait()
        with pool.lease(2) as lease:
            assert lease.devices == ["0", "1"]
    finally:
        holder.kill()


# ---- on CPU with gloo: 2 ranks against 1 process ----

def _llama(folder, hidden: int, intermediate: int, layers: int):
    """A decoder of a given width, saved with the tiny tokenizer (a local model folder)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from harness.models.tiny import _train_tokenizer

    tokenizer = _train_tokenizer(decoder=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=4,
                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _run(path, tmp_path, name):
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p"),
                 "--quiet"]) == 0
    records = {r.method: r for r in FileRecordStore(tmp_path / "r" / name).load_all()}
    assert all(r.status == "complete" for r in records.values()), {m: r.reason for m, r in records.items()}
    return records


@pytest.mark.e2e
def test_two_ranks_train_to_the_losses_of_one_process(write_suite, tmp_path, capsys):
    """DDP with LoRA and FSDP with full fine-tuning, 2 ranks of micro-batch 4 against one process of 8: the
    same global batches, so the same losses (the Trainer averages the ranks' token-weighted losses)."""
    _llama(tmp_path / "wide", 512, 1024, 2)
    methods = "\n".join([
        "  - {name: full, label: full-1}",
        "  - {name: full, label: full-fsdp2, distributed: {processes: 2, strategy: fsdp}}",
        "  - {name: lora, label: lora-1, params: {lora_dropout: 0.0}}",
        "  - {name: lora, label: lora-ddp2, params: {lora_dropout: 0.0}, distributed: {processes: 2, strategy: ddp}}"])
    records = _run(_suite(write_suite, methods, steps=8, model="./wide"), tmp_path, "dist")
    out = capsys.readouterr().out
    assert "full-fsdp2 (fsdp x2)" in out and "lora-ddp2 (ddp x2)" in out

    def losses(method):
        return [h["loss"] for h in records[method].history if "loss" in h]

    for one, two in (("full-1", "full-fsdp2"), ("lora-1", "lora-ddp2")):
        print(f"{one}: {[round(x, 5) for x in losses(one)]}\n{two}: {[round(x, 5) for x in losses(two)]}")
        assert len(losses(one)) == 8 and losses(two) == pytest.approx(losses(one), rel=1e-4, abs=1e-4), (one, two)
        assert records[two].throughput.train_tokens == records[one].throughput.train_tokens  # gathered over ranks
        d = records[two].distributed
        assert d.processes == 2 and len(d.ranks) == 2 and all(f.train_bytes for f in d.ranks)
        assert records[two].memory.train_bytes == max(f.train_bytes for f in d.ranks)
        assert records[two].retention is None and records[two].serving is None  # the suite turned both off
        # both ranks ran on this one host's cores: MFU against its peak once, not twice
        assert records[two].throughput.peak_source == records[one].throughput.peak_source


@pytest.mark.e2e
def test_qlora_trains_under_fsdp_and_ddp_to_the_losses_of_one_process(write_suite, tmp_path):
    """FSDP-QLoRA: the 4-bit base sharded over 2 ranks, with torch's AdamW (the load-time check asks for it:
    bitsandbytes' paged AdamW cannot step sharded parameters); DDP keeps QLoRA's own paged 8-bit AdamW."""
    methods = "\n".join([
        "  - {name: qlora, label: q-1, params: {optim: adamw_torch, lora_dropout: 0.0}}",
        "  - {name: qlora, label: q-fsdp2, params: {optim: adamw_torch, lora_dropout: 0.0}, "
        "distributed: {processes: 2, strategy: fsdp}}",
        "  - {name: qlora, label: q-paged-1, params: {lora_dropout: 0.0}}",
        "  - {name: qlora, label: q-ddp2, params: {lora_dropout: 0.0}, distributed: {processes: 2, strategy: ddp}}"])
    records = _run(_suite(write_suite, methods, name="qdist"), tmp_path, "qdist")

    def losses(method):
        return [h["loss"] for h in records[method].history if "loss" in h]

    for one, two in (("q-1", "q-fsdp2"), ("q-paged-1", "q-ddp2")):
        print(f"{one}: {[round(x, 5) for x in losses(one)]}\n{two}: {[round(x, 5) for x in losses(two)]}")
        assert len(losses(one)) == 6 and losses(two) == pytest.approx(losses(one), rel=1e-4, abs=1e-4), (one, two)
        assert records[two].distributed.processes == 2


@pytest.mark.e2e
def test_dpo_trains_under_fsdp_and_ddp_to_the_losses_and_scores_of_one_process(write_suite, tmp_path):
    """TRL's DPO trainer over ranks. Full fine-tuning's frozen reference copy is sharded by TRL as well, so
    it is gathered beside the policy before rank 0 scores alone: left sharded, rank 0's first reference
    forward waited in an all-gather for ranks that had finished (a hang, found by this test's suite)."""
    text = """\
name: pdist
models: [{source: 'builtin:tiny-llama', max_length: 96}]
tasks:
  - {name: pairs, kind: preference, objective: dpo,
     data: {builtin: preference-support, train_size: 32, validation_size: 8, test_size: 16}}
methods:
  - {name: lora, label: lora-1, params: {lora_dropout: 0.0}}
  - {name: lora, label: lora-ddp2, params: {lora_dropout: 0.0}, distributed: {processes: 2, strategy: ddp}}
  - {name: full, label: full-1}
  - {name: full, label: full-fsdp2, distributed: {processes: 2, strategy: fsdp}}
search: {sampler: none}
training: {max_steps: 3, batch_size: 8, eval_batch_size: 16}
references: false
runner: {trial_timeout_s: 300}
"""
    records = _run(write_suite(text), tmp_path, "pdist")
    for one, two in (("lora-1", "lora-ddp2"), ("full-1", "full-fsdp2")):
        losses = [[h["loss"] for h in records[m].history if "loss" in h] for m in (one, two)]
        assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], rel=1e-4, abs=1e-4), (one, two)
        for metric in ("preference_accuracy", "margin", "kl_to_reference"):
            assert records[two].metrics[metric] == pytest.approx(records[one].metrics[metric], abs=1e-4), metric


@pytest.mark.e2e
def test_an_encoder_classifier_trains_under_fsdp_at_one_process_s_loss(write_suite, tmp_path):
    """BERT under FSDP: accelerate wrapped BertEmbeddings (a _no_split_module) and then its word embeddings
    again, and fully_shard failed on the sharded weight (runner/trainer.py shard_units). Its classification
    loss is a mean the Trainer scaled by the ranks (x2: 1.374 against 0.692 at the first step); now the
    same scale as one process (dropout draws differ between the runs, so not equal)."""
    text = """\
name: enc
models: [{source: 'builtin:tiny-bert', max_length: 48}]
tasks: [{name: senti, kind: classification, data: {builtin: sentiment, train_size: 64, test_size: 16}}]
methods:
  - {name: full, label: full-1}
  - {name: full, label: full-fsdp2, distributed: {processes: 2, strategy: fsdp}}
  - {name: lora, label: lora-fsdp2, distributed: {processes: 2, strategy: fsdp}}
search: {sampler: none}
training: {max_steps: 2, batch_size: 8, eval_batch_size: 8}
references: false
serving: {enabled: false}
retention: {enabled: false}
"""
    records = _run(write_suite(text), tmp_path, "enc")
    first = {m: next(h["loss"] for h in r.history if "loss" in h) for m, r in records.items()}
    print(first)
    assert abs(first["full-fsdp2"] - first["full-1"]) < 0.1 and abs(first["lora-fsdp2"] - first["full-1"]) < 0.1


@pytest.mark.e2e
def test_fsdp_per_rank_train_memory_is_below_one_process(write_suite, tmp_path):
    """Full fine-tuning of a 65M-parameter decoder (260 MiB of weights, Adam states twice that): each of 2
    FSDP ranks holds half the parameters, gradients and optimizer states, and half the micro-batch."""
    _llama(tmp_path / "big", 1024, 4096, 4)
    methods = ("  - {name: full, label: full-1}\n"
               "  - {name: full, label: full-fsdp2, distributed: {processes: 2, strategy: fsdp}}")
    text = BASE.format(name="mem", methods=methods, steps=2, model="./big").replace("test_size: 8", "test_size: 4")
    records = _run(write_suite(text), tmp_path, "mem")
    one_mib = records["full-1"].memory.train_bytes / 2**20
    rank_mib = [f.train_bytes / 2**20 for f in records["full-fsdp2"].distributed.ranks]
    print(f"full fine-tuning train MiB: one process {one_mib:.0f}, FSDP ranks {[round(m) for m in rank_mib]}")
    assert max(rank_mib) < one_mib - 50, (one_mib, rank_mib)


def _descendants(pid: int):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.mark.e2e
def test_a_killed_rank_ends_the_trial_as_crashed_with_no_process_left(write_suite, tmp_path):
    import psutil

    path = _suite(write_suite, "  - {name: full, distributed: {processes: 2, strategy: fsdp}}", name="kill",
                  steps=4000)
    run = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(path), "--results", str(tmp_path / "r"),
                            "--reports", str(tmp_path / "p"), "--quiet"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    # harness run -> its sweep process -> the trial process (forked) -> the ranks (forked by torch's launcher)
    ranks, tree = [], []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.poll() is None and len(ranks) < 2:
        tree = _descendants(run.pid)
        try:
            ranks = [p for p in tree if len(p.parents()) >= 3 and p.parents()[2].pid == run.pid
                     and time.time() - p.create_time() > 2.0]
        except psutil.Error:
            ranks = []
        time.sleep(0.1)
    assert len(ranks) == 2, f"no ranks seen: {run.poll()}"
    trial = ranks[0].parent()
    victim = max(ranks, key=lambda p: p.pid)
    victim.kill()
    out = run.communicate(timeout=180)[0]
    # the sweep ends normally: a crashed trial is a record (exit 1: the one cell has no complete trial)
    assert run.returncode == 1 and "has no complete trial" in out, out
    time.sleep(0.5)
    left = [p for p in [*tree, trial] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    listing = subprocess.run(["ps", "-eo", "pid,ppid,stat,args"], capture_output=True, text=True).stdout
    print("process listing after the rank was killed:\n" + "\n".join(
        line for line in listing.splitlines() if "PID" in line or "multiprocessing" in line or "harness.cli" in line))
    assert not left, left
    [record] = FileRecordStore(tmp_path / "r" / "kill").load_all()
    print("record:", record.status, record.reason)
    # the killed rank has no record; the other may have none either (the launcher's SIGTERM can come first)
    assert record.status == "crashed" and re.search(r"ranks? [\d, ]+ of 2 ended without a record", record.reason)
    # the launcher's account: usually "rank 1 killed by SIGKILL"; if the other rank failed on the broken
    # connection before its next poll, it names that one first
    assert re.search(r"the launcher saw rank \d (killed by SIGKILL|exited with code)", record.reason), record.reason


@pytest.mark.e2e
def test_two_workers_each_leasing_2_of_4_devices_finish_the_suite_with_an_exact_budget(write_suite, tmp_path,
                                                                                        monkeypatch):
    from collections import Counter

    monkeypatch.setenv("HARNESS_DEVICE_LOCKS", str(tmp_path / "locks"))  # fake devices 0-3, this test's own
    methods = ("  - {name: lora, distributed: {processes: 2, strategy: ddp}}\n"
               "  - {name: full, distributed: {processes: 2, strategy: fsdp}}")
    path = _suite(write_suite, methods, name="lease", steps=3).read_text().replace(
        "search: {sampler: none}", "search: {sampler: random, trials_per_cell: 3}")
    path = write_suite(path)
    assert main(["run", str(path), "--workers", "2", "--gpus", "0-3", "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "p"), "--quiet"]) == 0
    records = FileRecordStore(tmp_path / "r" / "lease").load_all()
    assert Counter(r.cell_id for r in records if r.status == "complete") == {
        "chat--tiny-llama--lora": 3, "chat--tiny-llama--full": 3}, [(r.cell_id, r.status, r.reason) for r in records]
    assert len(records) == 6 and all(len(r.devices) == 2 and set(r.devices) <= {"0", "1", "2", "3"}
                                      for r in records)
    assert all(r.distributed.processes == 2 for r in records)
    print("leases:", sorted((r.worker.split(":")[-1], r.method, tuple(r.devices)) for r in records))


@pytest.mark.e2e
def test_processes_auto_trains_over_the_fewest_fsdp_ranks_that_fit(write_suite, tmp_path, capsys, monkeypatch):
    """A memory limit that one process of full fine-tuning exceeds and one of 2 FSDP ranks does not:
    `harness estimate` says it fits at 2, the sweep on 4 leased devices trains it over 2 (and its record's
    estimate is the rank's); with no devices to lease it stays on one and is skipped, saying why."""
    monkeypatch.setenv("HARNESS_DEVICE_LOCKS", str(tmp_path / "locks"))
    both = _suite(write_suite, "  - {name: full, label: one}\n"
                  "  - {name: full, label: two, distributed: {processes: 2, strategy: fsdp}}", name="sizes", steps=3)
    assert main(["estimate", str(both), "--json"]) == 0
    peak = {c["cell_id"].rsplit("--", 1)[1]: c["predicted_peak_bytes"] for c in json.loads(capsys.readouterr().out)["cells"]}
    assert peak["two"] < peak["one"], peak
    limit = (peak["one"] + peak["two"]) // 2 // 2**20
    auto = _suite(write_suite, "  - {name: full, distributed: {processes: auto, strategy: fsdp}}", name="auto",
                  steps=3, extra=f"runner: {{memory_limit: {limit}MiB}}\n")
    assert main(["estimate", str(auto), "--json"]) == 0
    (cell,) = json.loads(capsys.readouterr().out)["cells"]
    assert (cell["min_processes"], cell["processes"], cell["fits"]) == (2, 2, True), cell
    assert main(["estimate", str(auto)]) == 0
    assert "x2" in capsys.readouterr().out  # the `fsdp fits at` column

    assert main(["run", str(auto), "--gpus", "0-3", "--results", str(tmp_path / "r"), "--reports",
                 str(tmp_path / "p"), "--quiet"]) == 0
    (record,) = FileRecordStore(tmp_path / "r" / "auto").load_all()
    assert record.status == "complete", record.reason
    assert record.distributed.processes == 2 and len(record.devices) == 2
    assert record.estimate["processes"] == 2 and record.estimate["fits"] is True

    main(["run", str(auto), "--results", str(tmp_path / "r1"), "--reports", str(tmp_path / "p1"), "--quiet"])
    # no lease pool: one device, where it does not fit
    (record,) = FileRecordStore(tmp_path / "r1" / "auto").load_all()
    assert record.status == "skipped" and "predicted not to fit" in record.reason
    assert "FSDP fits at 2 ranks" in record.reason and "--gpus" in record.reason


# ---- adapters in the compute dtype ----

def test_adapter_dtype_compute_keeps_adapters_and_their_inputs_in_bf16():
    """peft's default (adapter_dtype: float32) keeps a bf16 model's LoRA weights in float32 and casts each
    adapted layer's input up; compute keeps both in bf16. The estimate sees the same difference."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.estimate import Target, estimate
    from harness.methods import METHODS, ApplyContext
    from harness.spec import TrialTraining
    from harness.tasks.heads import HEADS
    from tests.test_estimate import llama_config

    lora = METHODS.get("lora")
    ctx = ApplyContext("CAUSAL_LM", (), "llama", 10, "cpu")
    dtypes = {}
    for setting in ("float32", "compute"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(llama_config(), dtype=torch.bfloat16)
        model = lora.build(model, lora.params(adapter_dtype=setting, lora_dropout=0.0), ctx)
        dtypes[setting] = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    assert dtypes == {"float32": {torch.float32}, "compute": {torch.bfloat16}}

    target = Target("cuda", 80 * 2**30, 1e15, "test", "H100")
    predicted = {s: estimate("c", lora, {"adapter_dtype": s, "target_modules": "all-linear"},
                             TrialTraining(batch_size=8, micro_batch_size=8), config=llama_config(),
                             head=HEADS.get("causal_lm"), num_labels=2, seq_len=256, dtype="bfloat16",
                             target=target, micro_batch=8, find_max=False) for s in ("float32", "compute")}
    assert predicted["compute"].parts["activations"] < predicted["float32"].parts["activations"]
    assert predicted["compute"].predicted_peak_bytes < predicted["float32"].predicted_peak_bytes


@pytest.mark.e2e
def test_adapter_dtype_both_settings_train_a_bf16_model(write_suite, tmp_path, capsys):
    """The two settings on a tiny bf16 decoder through a sweep: both train (the loss curves, printed, start
    equal and stay close), the saved adapters hold the dtype asked for, and each record keeps its memory."""
    from safetensors import safe_open

    methods = ("  - {name: lora, label: adapters-fp32, params: {adapter_dtype: float32, lora_dropout: 0.0}}\n"
               "  - {name: lora, label: adapters-bf16, params: {adapter_dtype: compute, lora_dropout: 0.0}}")
    text = BASE.format(name="adt", methods=methods, steps=8, model="'builtin:tiny-llama', dtype: bfloat16")
    path = write_suite(text + "output: {keep_adapters: true}\n")
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p"),
                 "--quiet"]) == 0
    records = {r.method: r for r in FileRecordStore(tmp_path / "r" / "adt").load_all()}
    curves = {m: [round(h["loss"], 4) for h in r.history if "loss" in h] for m, r in records.items()}
    for m, r in records.items():
        print(f"{m}: losses {curves[m]}, train MiB {r.memory.train_bytes / 2**20:.1f}")
        assert r.status == "complete" and r.params["adapter_dtype"] in ("float32", "compute")
    fp32, bf16 = curves["adapters-fp32"], curves["adapters-bf16"]
    assert len(fp32) == len(bf16) == 8 and fp32[0] == pytest.approx(bf16[0], abs=0.05)
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.1  # bf16 adapters round, they do not diverge here
    for method, want in (("adapters-fp32", "F32"), ("adapters-bf16", "BF16")):
        [weights] = (tmp_path / "r" / "adt").glob(f"adapters/*{method}*/**/adapter_model.safetensors")
        with safe_open(str(weights), "pt") as f:
            kinds = {str(f.get_slice(k).get_dtype()) for k in f.keys() if "lora_" in k}
        assert kinds == {want}, (method, kinds)


def test_harness_estimate_gives_both_adapter_dtypes(tmp_path, capsys):
    """On a bf16 model each LoRA-family cell's estimate comes with the other adapter_dtype's peak."""
    from tests.test_estimate import LLAMA

    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**LLAMA, "architectures": ["LlamaForCausalLM"]}))
    suite = tmp_path / "s.yaml"
    suite.write_text("name: adt\nmodels: [{source: ./config-only, max_length: 256, dtype: bfloat16}]\n"
                     "tasks: [{name: s, kind: summarization, data: {builtin: dialogsum-mini}}]\n"
                     "methods: [{name: lora, params: {target_modules: all-linear}}, {name: full}]\n"
                     "training: {batch_size: 8}\n")
    assert main(["estimate", str(suite), "--gpu", "h100", "--json"]) == 0
    cells = {c["method"]: c for c in json.loads(capsys.readouterr().out)["cells"]}
    assert cells["full"]["other_adapter_dtype"] is None
    assert cells["lora"]["other_adapter_dtype"]["compute"] < cells["lora"]["predicted_peak_bytes"]
    assert main(["estimate", str(suite), "--gpu", "h100"]) == 0
    assert "compute" in capsys.readouterr().out
