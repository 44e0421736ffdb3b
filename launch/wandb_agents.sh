#!/bin/bash
# One W&B sweep agent per GPU on this box, each pinned to its GPU with CUDA_VISIBLE_DEVICES.
#
#   make -n sweep | head -1 | bash                       # the default sweep's stage 1 (its runs start
#                                                        # from sweeps_out/pretrain8: train.init_from)
#   wandb sweep experiments/sweeps/default.yaml        # prints ENTITY/PROJECT/SWEEP_ID
#   SWEEP_ID=ENTITY/PROJECT/SWEEP_ID launch/wandb_agents.sh
#
# GPUS (default: all that nvidia-smi lists) and RUNS_PER_AGENT (default: until the sweep ends).
# Logs go to agent_<gpu>.log; DRY_RUN=1 prints the commands.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
require SWEEP_ID
if [[ -z "${GPUS:-}" ]]; then
  command -v nvidia-smi >/dev/null || { echo "$0: no nvidia-smi; set GPUS=N" >&2; exit 2; }
  GPUS=$(nvidia-smi -L | wc -l)
fi
(( GPUS > 0 )) || { echo "$0: GPUS=$GPUS; need at least 1" >&2; exit 2; }
count=${RUNS_PER_AGENT:+--count $RUNS_PER_AGENT}
for ((i = 0; i < GPUS; i++)); do
  cmd="CUDA_VISIBLE_DEVICES=$i XLA_PYTHON_CLIENT_MEM_FRACTION=0.9 wandb agent $count $SWEEP_ID"
  if [[ -n "${DRY_RUN:-}" ]]; then echo "$cmd"; continue; fi
  command -v wandb >/dev/null || { echo "$0: wandb is not installed (pip install -e .)" >&2; exit 2; }
  nohup env CUDA_VISIBLE_DEVICES=$i XLA_PYTHON_CLIENT_MEM_FRACTION=0.9 wandb agent $count "$SWEEP_ID" \
    > "agent_$i.log" 2>&1 &
  echo "agent $i on GPU $i: pid $!, log agent_$i.log"
done
[[ -n "${DRY_RUN:-}" ]] || wait
