#!/usr/bin/env bash
# Does the harness's peak-RSS figure agree with outside accounting? Runs one harness trial under
# /usr/bin/time -v (Debian package `time`) and compares its "Maximum resident set size" (the largest
# process of the run: the trial process for MiniLM; for a tiny model the sweep process's own
# loading peak can be larger) with the peak the record reports and the kernel's wait4 ru_maxrss.
#   bash benchmarks/rss_vs_time.sh [model-source]      (default builtin:minilm-l6)
set -euo pipefail
model=${1:-builtin:minilm-l6}
tmp=$(mktemp -d)
/usr/bin/time -v harness bench --model "$model" --steps 20 --only harness --repeats 1 --json "$tmp/bench.json" \
  2> "$tmp/time.txt" >/dev/null
time_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$tmp/time.txt")
python3 - "$tmp/bench.json" "$time_kb" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["harness"]
harness_kib, kernel_kib = run["peak_bytes"] / 1024, run["kernel_max_rss_bytes"] / 1024
time_kib = float(sys.argv[2])
print(f"harness peak RSS (VmHWM per phase): {harness_kib / 1024:.1f} MiB")
print(f"kernel ru_maxrss of the trial process (wait4): {kernel_kib / 1024:.1f} MiB  ratio {harness_kib / kernel_kib:.3f}")
print(f"/usr/bin/time -v max RSS of the whole run: {time_kib / 1024:.1f} MiB  ratio {harness_kib / time_kib:.3f}")
PY
rm -rf "$tmp"
