#!/usr/bin/env bash
# Does the harness's peak-RSS figure agree with the kernel's own accounting? Runs one harness trial
# under /usr/bin/time -v (Debian package `time`) and compares its "Maximum resident set size"
# (the largest process of the run: the trial process) with the peak the record reports.
#   bash benchmarks/rss_vs_time.sh [model-source]      (default builtin:minilm-l6)
set -euo pipefail
model=${1:-builtin:minilm-l6}
tmp=$(mktemp -d)
/usr/bin/time -v harness bench --model "$model" --steps 20 --only harness --repeats 1 --json "$tmp/bench.json" \
  2> "$tmp/time.txt" >/dev/null
time_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$tmp/time.txt")
python3 - "$tmp/bench.json" "$time_kb" <<'PY'
import json, sys
harness_kib = json.load(open(sys.argv[1]))["harness"]["peak_bytes"] / 1024
time_kib = float(sys.argv[2])
print(f"harness peak RSS: {harness_kib / 1024:.1f} MiB   /usr/bin/time -v max RSS: {time_kib / 1024:.1f} MiB   "
      f"ratio {harness_kib / time_kib:.3f}")
PY
rm -rf "$tmp"
