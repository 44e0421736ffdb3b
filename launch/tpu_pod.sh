#!/bin/bash
# A Cloud TPU VM pod slice: the same command on every worker (JAX detects the TPU cluster).
#
#   TPU_NAME=my-v5e-32 TPU_ZONE=us-west4-a GCP_PROJECT=my-proj launch/tpu_pod.sh setup
#   TPU_NAME=... TPU_ZONE=... GCP_PROJECT=... ENCDEC_CONFIG=experiments/configs/df.py \
#     ENCDEC_WORKDIR=/mnt/shared/runs/df1 launch/tpu_pod.sh train [--config.train.steps=...]
#
# setup clones ENCDEC_REPO (default: this repo's origin) at ENCDEC_REF on every worker and installs
# it with the [tpu] extra. ENCDEC_WORKDIR must be shared by all workers (Filestore or a gcsfuse mount).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
cmd=${1:-}
[[ "$cmd" == setup || "$cmd" == train ]] || { echo "usage: $0 setup|train [train flags]" >&2; exit 2; }
shift
require TPU_NAME TPU_ZONE GCP_PROJECT
[[ "$cmd" == train ]] && require ENCDEC_CONFIG ENCDEC_WORKDIR
command -v gcloud >/dev/null || { echo "$0: gcloud is not installed" >&2; exit 2; }
REPO=${ENCDEC_REPO:-$(git -C "$(dirname "$0")" remote get-url origin 2>/dev/null || true)}
REF=${ENCDEC_REF:-main}
if [[ "$cmd" == setup ]]; then
  [[ -n "$REPO" ]] || { echo "$0: set ENCDEC_REPO (no git origin here)" >&2; exit 2; }
  remote="set -e; [ -d encdec_jax ] || git clone $REPO encdec_jax; cd encdec_jax; git fetch -q; git checkout -q $REF;
python3 -m venv .venv; .venv/bin/pip install -q -e '.[tpu]'"
else
  remote="cd encdec_jax && ENCDEC_DISTRIBUTED=auto .venv/bin/python -m experiments.train \
--config=$ENCDEC_CONFIG --workdir=$ENCDEC_WORKDIR $*"
fi
exec gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$TPU_ZONE" --project "$GCP_PROJECT" \
  --worker=all --command "$remote"
