#!/usr/bin/env bash
# One-command GPU check on a random-initialised TinyLlama-1.1B shape in bf16, micro-batch 8 x 1024,
# each configuration through the harness's trial path and a bare PyTorch loop (`harness bench`),
# printing tokens/s, peak memory by torch and by NVML, joules per step, MFU and compile time.
#
#   bash benchmarks/gpu_check.sh                 # acceleration, then methods (about 11 minutes on one H100)
#   bash benchmarks/gpu_check.sh --acceleration  # LoRA and full, causal-LM head, 20 steps, eager / Liger /
#                                                # compile / checkpointing (8 runs x 2 paths, about 7 minutes)
#   bash benchmarks/gpu_check.sh --methods       # full, LoRA, QLoRA, IA3, LN tuning, eager (about 4 minutes)
#   bash benchmarks/gpu_check.sh --serving       # serving profile: LoRA r16 all-linear unmerged vs merged, QLoRA
#                                                # 4-bit base vs merged bf16; decode ms/token, batch-8 tokens/s,
#                                                # harness profile vs bare generate loop (estimated 3 minutes,
#                                                # not measured)
#   bash benchmarks/gpu_check.sh --preference    # DPO and reward, LoRA / QLoRA / full, 20 steps, 8 pairs x 256
#                                                # (not in the default run; estimated 2-3 minutes, not measured)
#   bash benchmarks/gpu_check.sh --adapter-dtype # LoRA r16 all-linear and QLoRA with adapters in float32 (peft's
#                                                # default) and in bf16 (adapter_dtype: compute): memory, tokens/s,
#                                                # loss; in the default run (estimated 2 minutes, not measured)
#   bash benchmarks/gpu_check.sh --distributed   # needs 2+ GPUs: full fine-tuning on 1 GPU vs FSDP on 2, LoRA DDP
#                                                # on 2, through `harness run --gpus 0,1`; per-rank memory against
#                                                # `harness estimate` (not in the default run; estimated 4 minutes)
#   bash benchmarks/gpu_check.sh --smoke         # the same code paths on a CPU with the tiny decoder
#                                                # (Liger and flash attention need CUDA: left out there)
#   WHEELS=/path/to/wheels bash benchmarks/gpu_check.sh   # a bare GPU machine with no network: installs
#       harness and what it needs from that folder first (make it on a networked machine with
#       `bash benchmarks/gpu_wheels.sh /path/to/wheels`)
#
# Reference figures (bare PyTorch loop, one H100, TinyLlama-1.1B shape, 8 x 1024, bf16, causal-LM loss):
#   LoRA r16 all-linear: eager 31.3k tok/s 27.3 GiB | Liger 39.0k | compile 51.1k (117 s compiling) |
#                        checkpointing 4.3 GiB
#   full:                eager 49.8k tok/s 23.9 GiB (27.3 GiB NVML) | Liger 72.3k (~48% MFU) | checkpointing 9.0 GiB
#   QLoRA NF4 30.3k 26.0 GiB (checkpointing 3.0 GiB) | IA3 52.5k 19.0 GiB | LN tuning 61.4k 16.4 GiB
# The script prints each run's ratio to eager beside these.
set -euo pipefail
out=${OUT:-gpu-check}
mkdir -p "$out"
mode=${1:-all}
smoke=0
[[ "$mode" == "--smoke" ]] && { smoke=1; mode=all; }

if [[ -n "${WHEELS:-}" ]]; then  # offline install from a wheel folder (gpu_wheels.sh made it)
  python -m pip install --no-index --find-links "$WHEELS" -e ".[gpu]"
fi
python - "$smoke" <<'PY'
import importlib.util, sys
missing = [m for m in ("harness", "optuna", "peft", "bitsandbytes") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: not installed: {', '.join(missing)} (pip install -e '.[gpu]', or WHEELS=<folder>)")
if sys.argv[1] == "0":
    import torch
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device visible to torch (use --smoke on a CPU)")
    print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
    if importlib.util.find_spec("liger_kernel") is None:
        print("gpu_check: liger-kernel is not installed; the Liger runs will be skipped (pip install -e '.[gpu]')")
PY

if [[ $smoke == 1 ]]; then
  common=(--model builtin:tiny-llama --data sentiment-long --max-length 64 --batch-size 8 --steps 6 --repeats 1 --test-size 8)
else
  common=(--model builtin:llama-1b-random --data sentiment-long --max-length 1024 --batch-size 8 --steps 20
          --repeats 1 --dtype bfloat16 --test-size 16 --eval-batch-size 8)
fi
run() {  # name, then harness bench arguments
  local name=$1; shift
  echo "=== $name"
  if ! harness bench "${common[@]}" "$@" --json "$out/$name.json" > "$out/$name.txt" 2>&1; then
    echo "    failed or refused (see $out/$name.txt):"; tail -n 3 "$out/$name.txt" | sed 's/^/    /'
  else
    tail -n 4 "$out/$name.txt" | sed 's/^/    /'
  fi
}
lora=(--method lora --param r=16 --param target_modules=all-linear --param lora_dropout=0.0)

if [[ "$mode" == all || "$mode" == --acceleration ]]; then
  for method in lora full; do
    if [[ $method == lora ]]; then args=("${lora[@]}"); else args=(--method full); fi
    run "accel-$method-eager"   --head causal-lm "${args[@]}"
    if [[ $smoke == 0 ]] && python -c "import liger_kernel" 2>/dev/null; then
      run "accel-$method-liger" --head causal-lm "${args[@]}" --accelerate kernels=liger
    fi
    run "accel-$method-compile" --head causal-lm "${args[@]}" --accelerate compile=true
    run "accel-$method-ckpt"    --head causal-lm "${args[@]}" --accelerate gradient_checkpointing=true
  done
fi
if [[ "$mode" == all || "$mode" == --methods ]]; then
  run full      --method full
  run lora      "${lora[@]}"
  run qlora     --method qlora --param r=16 --param target_modules=all-linear --param lora_dropout=0.0
  run ia3       --method ia3
  run ln_tuning --method ln_tuning
fi

if [[ "$mode" == all || "$mode" == --serving ]]; then
  # the serving variants through the harness's profile and a bare generate loop (harness bench --serving)
  if [[ $smoke == 1 ]]; then serve=(--model builtin:tiny-llama --max-length 64)
  else serve=(--model builtin:llama-1b-random --max-length 512 --dtype bfloat16); fi
  for method in lora qlora; do
    echo "=== serving-$method"
    if ! harness bench --serving "${serve[@]}" --data dialogsum-mini --method $method --param r=16 \
        --param target_modules=all-linear --repeats 3 --json "$out/serving-$method.json" > "$out/serving-$method.txt" 2>&1; then
      echo "    failed (see $out/serving-$method.txt):"; tail -n 3 "$out/serving-$method.txt" | sed 's/^/    /'
    else
      tail -n 8 "$out/serving-$method.txt" | sed 's/^/    /'
    fi
  done
fi

if [[ "$mode" == all || "$mode" == --adapter-dtype ]]; then
  # peft keeps a bf16 model's adapters in float32 and casts each adapted layer's input to float32;
  # adapter_dtype=compute keeps them in bf16 (docs/distributed.md)
  for dt in float32 compute; do
    run "lora-adapters-$dt"  --method lora  "${lora[@]:2}" --param adapter_dtype=$dt
    run "qlora-adapters-$dt" --method qlora --param r=16 --param target_modules=all-linear --param lora_dropout=0.0 \
        --param adapter_dtype=$dt
  done
fi

if [[ "$mode" == --distributed || ( $smoke == 1 && "$mode" == all ) ]]; then
  # full fine-tuning on one device against FSDP over two, and LoRA under DDP, through harness run --gpus
  ngpu=$(python -c "import torch; print(torch.cuda.device_count())")
  if [[ $smoke == 0 && $ngpu -lt 2 ]]; then
    echo "=== distributed: skipped, it needs at least 2 GPUs and torch sees $ngpu"
  else
    if [[ $smoke == 1 ]]; then model="source: builtin:tiny-llama, max_length: 64"; steps=6; gpus=(); device=cpu
    else model="source: builtin:llama-1b-random, dtype: bfloat16, max_length: 1024"; steps=20; gpus=(--gpus 0,1); device=cuda; fi
    cat > "$out/distributed.yaml" <<YAML
name: gpu-distributed
models: [{$model}]
tasks: [{name: chat, kind: summarization, data: {builtin: dialogsum-mini, test_size: 16}}]
methods:
  - {name: full, label: full-1}
  - {name: full, label: full-fsdp2, distributed: {processes: 2, strategy: fsdp}}
  - {name: lora, label: lora-ddp2, params: {r: 16, target_modules: all-linear, lora_dropout: 0.0}, distributed: {processes: 2}}
search: {sampler: none}
training: {max_steps: $steps, batch_size: 8, eval_batch_size: 8, device: $device}
references: false
serving: {enabled: false}
retention: {enabled: false}
YAML
    echo "=== distributed (full on 1 vs FSDP on 2, LoRA DDP on 2)"
    rm -rf "$out/results/gpu-distributed"
    harness run "$out/distributed.yaml" "${gpus[@]}" --results "$out/results" --reports "$out/reports" --quiet 2>&1 \
      | grep -v Warning | tail -n 12 | sed 's/^/    /' || echo "    failed (see $out/results/gpu-distributed)"
    python - "$out/results/gpu-distributed" <<'PY'
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/records/*/*.json")):
    r = json.load(open(path))
    est = (r.get("estimate") or {}).get("predicted_peak_bytes")
    ranks = (r.get("distributed") or {}).get("ranks") or []
    per = ", ".join(f"rank {f['rank']} {f['train_bytes'] / 2**20:.0f} MiB {f['median_step_s'] * 1000:.0f} ms/step"
                    for f in ranks)
    print(f"    {r['method']:11s} {r['status']:8s} train {(r['memory']['train_bytes'] or 0) / 2**20:7.0f} MiB "
          f"(estimate {est / 2**20 if est else 0:7.0f}) {r['throughput']['train_tokens_per_s']:8.0f} tok/s "
          f"devices {r.get('devices')} {per}")
PY
  fi
fi

if [[ "$mode" == --preference || $smoke == 1 ]]; then
  # DPO and a reward model under LoRA, QLoRA and full fine-tuning through `harness run`: full DPO holds a
  # frozen reference copy (its train MiB and NVML peak show it), LoRA/QLoRA switch their adapters off
  if [[ $smoke == 1 ]]; then model="source: builtin:tiny-llama, max_length: 96"; steps=4
  else model="source: builtin:llama-1b-random, dtype: bfloat16, max_length: 256"; steps=20; fi
  cat > "$out/preference.yaml" <<YAML
name: gpu-preference
models: [{$model}]
tasks:
  - {name: dpo, kind: preference, objective: dpo, data: {builtin: preference-support, validation_size: 16, test_size: 32}}
  - {name: reward, kind: preference, objective: reward, data: {builtin: preference-support, validation_size: 16, test_size: 32}}
methods: [{name: lora}, {name: qlora}, {name: full}]
search: {trials_per_cell: 1, seed: 0, strategy: none}
training: {max_steps: $steps, batch_size: 8, eval_batch_size: 16}
references: false
YAML
  echo "=== preference (DPO and reward; LoRA, QLoRA, full)"
  rm -rf "$out/results/gpu-preference"
  harness run "$out/preference.yaml" --results "$out/results" --reports "$out/reports" --quiet 2>&1 \
    | grep -v Warning | tail -n 24 | sed 's/^/    /' || echo "    failed (see $out/results/gpu-preference)"
fi

python - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
# bare-loop references on one H100 (the issue's figures): tokens/s and peak GiB where given
REFERENCE = {("lora", "eager"): (31.3e3, 27.3), ("lora", "liger"): (39.0e3, None), ("lora", "compile"): (51.1e3, None),
             ("lora", "ckpt"): (None, 4.3), ("full", "eager"): (49.8e3, 23.9), ("full", "liger"): (72.3e3, None),
             ("full", "ckpt"): (None, 9.0)}
def show(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
print(f"\n{'run':22s} {'path':7s} {'tok/s':>8s} {'x eager':>7s} {'ref x':>6s} {'alloc GiB':>9s} {'ref GiB':>7s} "
      f"{'NVML GiB':>8s} {'J/step':>7s} {'MFU %':>6s} {'compile s':>9s} {'eval/s':>7s}")
for method in ("lora", "full"):
    eager = show(f"accel-{method}-eager")
    for option in ("eager", "liger", "compile", "ckpt"):
        d = show(f"accel-{method}-{option}")
        if d is None:
            continue
        ref_tps, ref_gib = REFERENCE.get((method, option), (None, None))
        ref_eager = REFERENCE[(method, "eager")][0]
        for path in ("harness", "bare"):
            r, e = d[path], (eager or d)[path]
            gpu = r.get("gpu") or {}
            alloc = gpu.get("train_peak_allocated_bytes", r["train_bytes"]) / 2**30
            nvml = gpu.get("nvml_peak_process_used_bytes", 0) / 2**30
            ratio = r["tokens_per_s"] / e["tokens_per_s"]
            ref_ratio = f"{ref_tps / ref_eager:.2f}" if ref_tps else "-"
            jps, mfu = r.get("joules_per_step"), r.get("mfu")
            print(f"{method + ' ' + option:22s} {path:7s} {r['tokens_per_s']:8.0f} {ratio:7.2f} {ref_ratio:>6s} "
                  f"{alloc:9.1f} {ref_gib if ref_gib else '-':>7} {nvml:8.1f} "
                  f"{'-' if jps is None else f'{jps:.1f}':>7s} {'-' if mfu is None else f'{100 * mfu:.1f}':>6s} "
                  f"{r.get('compile_s') or 0:9.1f} {r.get('eval_samples_per_s') or 0:7.1f}")
for name in ("full", "lora", "qlora", "ia3", "ln_tuning"):
    d = show(name)
    if d is None:
        continue
    h, b = d["harness"], d["bare"]
    gpu = h.get("gpu") or {}
    print(f"{name:22s} harness {h['tokens_per_s']:8.0f} (bare {b['tokens_per_s']:.0f}, ratio {d['throughput_ratio']:.3f}) "
          f"alloc {gpu.get('train_peak_allocated_bytes', 0) / 2**30:.1f} GiB, NVML {gpu.get('nvml_peak_process_used_bytes', 0) / 2**30:.1f} GiB")
PY
