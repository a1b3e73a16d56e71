"""The acceleration options measured on this CPU with the offline real models (issue: compare
methods at their best). Each figure is a ratio against the eager run of the same configuration,
run by the same command; absolute CPU figures say nothing about a GPU.

    python benchmarks/acceleration_cpu.py [--only checkpointing|packing|compile|scoring] [--out DIR]

- checkpointing: SmolLM2-135M, causal-LM head, 4 x 512 tokens, LoRA and full fine-tuning, eager
  against acceleration gradient_checkpointing (`harness bench`: the harness's trial path and a bare
  loop, each in its own process): training peak RSS above the baseline, and tokens/s.
- packing: SmolLM2-135M on DialogSum's real dialogues (../shared/data; ~100-600 tokens), LoRA,
  micro-batch 8 up to 512 tokens, through `harness run` with acceleration_axis [{}, {packing: true}]:
  non-padding tokens/s padded against packed (rows of several examples, none longer than the
  batch's longest). The built-in sets are too even in length for packing to matter (SmolLM2:
  medqa-mini 68-123 tokens, dialogsum-mini 137-187: no two examples fit in one row).
- compile: MiniLM-L6 on the built-in sentiment set, LoRA and full fine-tuning, 30 steps: compile
  time, and tokens/s with the compile time left out.
- scoring: SmolLM2-135M scoring PubMedQA's yes/no/maybe over its abstracts (../shared/data,
  ~350-token prompts) one prompt at a time against 8 at a time: the same picks, and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMOLLM2, MINILM = "builtin:smollm2-135m", "builtin:minilm-l6"


def bench(out: Path, name: str, *args: str) -> dict:
    path = out / f"{name}.json"
    cmd = ["harness", "bench", "--repeats", "1", "--json", str(path), *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(path.read_text())
    result["wall_s"] = time.perf_counter() - t0
    return result


def against_eager(out: Path, name: str, common: list[str], option: str) -> list[tuple[str, dict, dict]]:
    """(path, eager run, run with the option) for the harness path and the bare loop: one bench each."""
    eager = bench(out, f"{name}-eager", *common)
    other = bench(out, f"{name}-{option.split('=')[0]}", *common, "--accelerate", option)
    return [(path, eager[path], other[path]) for path in ("harness", "bare")]


def mib(n) -> str:
    return f"{n / 2**20:,.0f}"


def checkpointing(out: Path) -> None:
    print("## gradient checkpointing: SmolLM2-135M, causal-LM head, micro-batch 4 x 512 tokens, 3 steps")
    print("| method | path | eager train MiB | ckpt train MiB | change | eager tok/s | ckpt tok/s | speed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in ("lora", "full"):
        common = ["--model", SMOLLM2, "--head", "causal-lm", "--data", "sentiment-long", "--max-length", "512",
                  "--batch-size", "4", "--steps", "3", "--method", method, "--test-size", "8"]
        for path, e, c in against_eager(out, f"ckpt-{method}", common, "gradient_checkpointing=true"):
            print(f"| {method} | {path} | {mib(e['train_bytes'])} | {mib(c['train_bytes'])} | "
                  f"{c['train_bytes'] / e['train_bytes'] - 1:+.0%} | {e['tokens_per_s']:.0f} | {c['tokens_per_s']:.0f} | "
                  f"{c['tokens_per_s'] / e['tokens_per_s']:.2f}x |", flush=True)


def packing(out: Path) -> None:
    """A suite with the axis [{}, {packing: true}] on DialogSum's real dialogues (../shared/data:
    ~100-600 tokens, so short ones share a row), through `harness run` and its acceleration table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from shared_data import DATA, dialogsum

    if not (DATA / "dialogsum").exists():
        print("\n## packing: skipped, ../shared/data/dialogsum is absent")
        return
    files = dialogsum(out)
    suite = out / "packing.yaml"
    suite.write_text(f"name: packing\nmodels: [{{source: '{SMOLLM2}', max_length: 512}}]\n"
                     f"tasks: [{{name: dialogsum, kind: summarization, data: {{files: {json.dumps(files)}, "
                     f"train_size: 96, validation_size: 4, test_size: 4}}}}]\n"
                     f"methods: [{{name: lora}}]\nsearch: {{trials_per_cell: 1, sampler: none}}\n"
                     f"training: {{max_steps: 6, batch_size: 8, eval_batch_size: 4}}\nreferences: false\n"
                     f"acceleration_axis: [{{}}, {{packing: true}}]\n")
    done = subprocess.run(["harness", "run", str(suite), "--results", str(out / "results"), "--reports",
                           str(out / "reports")], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"packing run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    from harness.records.store import FileRecordStore

    records = {r.acceleration["label"]: r for r in FileRecordStore(out / "results" / "packing").load_all()}
    padded, packed = records["eager"], records["packing"]
    print("\n## packing: SmolLM2-135M, LoRA, DialogSum dialogues (../shared/data), micro-batch 8 up to 512 tokens, 6 steps")
    print("| option | non-padding tokens | train s | tok/s | train MiB | busy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in (("padded", padded), ("packed", packed)):
        print(f"| {name} | {r.throughput.train_tokens:,} | {r.timing.train_s:.1f} | {r.throughput.train_tokens_per_s:.0f} | "
              f"{r.memory.train_bytes / 2**20:,.0f} | {r.host.get('other_cpu_share', 0):.0%} |")
    print(f"speed-up: {packed.throughput.train_tokens_per_s / padded.throughput.train_tokens_per_s:.2f}x "
          f"(the same non-padding tokens: {packed.throughput.train_tokens == padded.throughput.train_tokens})")


def compile_(out: Path) -> None:
    print("\n## torch.compile: MiniLM-L6 on sentiment, batch 16 x 128, 30 steps")
    print("| method | path | compile s | eager tok/s | compiled tok/s | speed-up | eager train MiB | compiled train MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in ("lora", "full"):
        common = ["--model", MINILM, "--data", "sentiment", "--max-length", "128", "--batch-size", "16",
                  "--steps", "30", "--method", method]
        for path, e, c in against_eager(out, f"compile-{method}", common, "compile=true"):
            print(f"| {method} | {path} | {c['compile_s']:.1f} | {e['tokens_per_s']:.0f} | {c['tokens_per_s']:.0f} | "
                  f"{c['tokens_per_s'] / e['tokens_per_s']:.2f}x | {mib(e['train_bytes'])} | {mib(c['train_bytes'])} |",
                  flush=True)


def scoring(out: Path, prompts: int = 48) -> None:
    """In this process: nothing is forked after these forwards (see tests/test_acceleration.py in_child)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from shared_data import DATA, pubmedqa

    from harness.config.loader import load_suite
    from harness.plan import plan
    from harness.runner.prepare import Preparer
    from harness.tasks.generative import pick_options

    if not (DATA / "pubmedqa").exists():
        print("\n## batched QA scoring: skipped, ../shared/data/pubmedqa is absent")
        return
    files, _ = pubmedqa(out)
    suite = out / "scoring.yaml"
    suite.write_text(f"name: scoring\nmodels: [{{source: '{SMOLLM2}', max_length: 512}}]\n"
                     f"tasks: [{{name: pubmedqa, kind: qa, data: {{files: {json.dumps(files)}, test_size: {prompts}}}}}]\n"
                     f"methods: [{{name: none}}]\n")
    loaded = load_suite(suite)
    cell = plan(loaded.suite)[0]
    prepared = Preparer(loaded.base_dir, seed=0).get(cell.model, cell.task)
    test = prepared.data["test"]
    ids, options = list(test["prompt_ids"]), list(test["option_ids"])
    lengths = sorted(len(p) for p in ids)
    model = prepared.model.eval()
    pick_options(model, ids[:2], options[:2], "cpu", 2)  # warm-up
    timed = {}
    for size in (1, 8):
        t0 = time.perf_counter()
        timed[size] = (pick_options(model, ids, options, "cpu", size), time.perf_counter() - t0)
    same = timed[1][0] == timed[8][0]
    print(f"\n## batched QA scoring: SmolLM2-135M, {len(ids)} PubMedQA test prompts "
          f"({lengths[0]}-{lengths[-1]} tokens, median {lengths[len(lengths) // 2]}), 3 options each")
    print("| eval batch | seconds | prompts/s |")
    print("| --- | --- | --- |")
    for size, (_, seconds) in timed.items():
        print(f"| {size} | {seconds:.1f} | {len(ids) / seconds:.2f} |")
    print(f"speed-up at batch 8: {timed[1][1] / timed[8][1]:.2f}x; identical picks: {same}")
    if not same:
        sys.exit("batched scoring changed a pick")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["checkpointing", "packing", "compile", "scoring"])
    parser.add_argument("--out", help="folder for the bench JSON files (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="acceleration-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts = {"checkpointing": checkpointing, "packing": packing, "compile": compile_, "scoring": scoring}
    for name, part in parts.items():
        if args.only in (None, name):
            part(out)


if __name__ == "__main__":
    main()
