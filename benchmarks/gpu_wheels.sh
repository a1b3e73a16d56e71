#!/usr/bin/env bash
# On a machine with network: every wheel benchmarks/gpu_check.sh needs on a bare GPU machine with
# none (harness and its dependencies, torch's CUDA build from PyPI, bitsandbytes, liger-kernel).
#   bash benchmarks/gpu_wheels.sh wheels/       # then copy wheels/ and the checkout over, and run
#   WHEELS=wheels/ bash benchmarks/gpu_check.sh
# Run it with the GPU machine's Python version (the wheels are built for it).
set -euo pipefail
dest=${1:?usage: gpu_wheels.sh DEST_FOLDER}
mkdir -p "$dest"
python -m pip wheel --wheel-dir "$dest" ".[gpu]" setuptools wheel
ls "$dest" | wc -l
