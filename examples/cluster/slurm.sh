#!/usr/bin/env bash
# One harness worker per GPU node of a SLURM job array; every worker claims trials of the same suite
# from the shared PostgreSQL database until the suite's budget and confirmations are done.
#   sbatch --array=0-7 examples/cluster/slurm.sh suites/summarize.yaml
#SBATCH --job-name=harness
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=harness-%A-%a.log
set -euo pipefail
SUITE=${1:?the suite file}
: "${HARNESS_STORAGE:?export HARNESS_STORAGE=postgresql://USER:PASSWORD@HOST/DB}"
. .venv/bin/activate
harness worker "$SUITE" --storage "$HARNESS_STORAGE" --results "results/worker-${SLURM_ARRAY_TASK_ID}" --quiet
# when the array is done, from any machine:
#   harness report --storage "$HARNESS_STORAGE" <suite name>
