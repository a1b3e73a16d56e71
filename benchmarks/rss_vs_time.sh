#!/usr/bin/env bash
# Does the harness's peak-RSS figure agree with outside accounting? Runs one harness trial twice
# under /usr/bin/time -v (Debian package `time`):
#   1. with --no-phase-reset: nothing resets the kernel's peak counter, so the record's peak, the
#      kernel's wait4 ru_maxrss of the trial process and /usr/bin/time's "Maximum resident set size"
#      (the largest process of the run) must agree;
#   2. as sweeps run (per-phase resets): the record's whole-trial peak, kept across the resets, must
#      still agree with /usr/bin/time's figure from run 1.
#   bash benchmarks/rss_vs_time.sh [model-source] [steps]      (default builtin:minilm-l6, 20)
set -euo pipefail
model=${1:-builtin:minilm-l6}
steps=${2:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # $1: name, rest: extra bench options
  local name=$1; shift
  /usr/bin/time -v harness bench --model "$model" --steps "$steps" --only harness --repeats 1 \
    --json "$tmp/$name.json" "$@" 2> "$tmp/$name.time" >/dev/null
}
run whole --no-phase-reset
run phases
python3 - "$tmp" <<'PY'
import json, re, sys
from pathlib import Path
tmp = Path(sys.argv[1])
def load(name):
    run = json.loads((tmp / f"{name}.json").read_text())["harness"]
    time_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", (tmp / f"{name}.time").read_text())[1])
    return run["peak_bytes"] / 2**20, run["kernel_max_rss_bytes"] / 2**20, time_kib / 1024, run["train_peak_bytes"] / 2**20
peak, kernel, timed, _ = load("whole")
print(f"1. no resets:  record peak {peak:.1f} MiB | wait4 ru_maxrss {kernel:.1f} MiB (ratio {peak / kernel:.3f}) | "
      f"/usr/bin/time -v {timed:.1f} MiB (ratio {peak / timed:.3f})")
peak2, kernel2, timed2, train2 = load("phases")
print(f"2. per-phase:  record whole-trial peak {peak2:.1f} MiB (ratio to run 1's /usr/bin/time {peak2 / timed:.3f}); "
      f"train-phase peak {train2:.1f} MiB; the kernel's counters now cover the last phase only: "
      f"ru_maxrss {kernel2:.1f}, /usr/bin/time {timed2:.1f} MiB")
PY
