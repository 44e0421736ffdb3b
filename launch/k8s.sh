#!/bin/bash
# Fills launch/k8s_jobset.yaml and applies it (or prints it with DRY_RUN=1).
#
#   JOB_NAME=df1 IMAGE=us-docker.pkg.dev/p/r/encdec_jax:latest NUM_NODES=2 GPUS_PER_NODE=8 \
#     PVC=encdec-runs ENCDEC_CONFIG=experiments/configs/df.py launch/k8s.sh
#
# IMAGE holds this repo at /app installed with the [cuda] extra; PVC is a ReadWriteMany claim
# mounted at /workdir (checkpoints of all pods go there).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
require JOB_NAME IMAGE NUM_NODES GPUS_PER_NODE PVC ENCDEC_CONFIG
export JOB_NAME IMAGE NUM_NODES GPUS_PER_NODE PVC ENCDEC_CONFIG
manifest=$(python3 -c 'import os, string, sys; print(string.Template(sys.stdin.read()).substitute(os.environ))' \
  < "$(dirname "$0")/k8s_jobset.yaml")
if [[ -n "${DRY_RUN:-}" ]]; then echo "$manifest"; exit 0; fi
command -v kubectl >/dev/null || { echo "$0: kubectl is not installed" >&2; exit 2; }
echo "$manifest" | kubectl apply -f -
