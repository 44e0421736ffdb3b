"""faceswap's IAE: shared encoder, per-identity + shared intermediates, one shared decoder; 64x64.

  python -m experiments.train --config=experiments/configs/iae.py:small --workdir=runs/iae
"""
from experiments.configs._arch import derive


def get_config(arg: str | None = None):
  return derive("iae", arg, {"model.bottleneck": 1024},
                small={"model.bottleneck": 128}, tiny={"model.bottleneck": 32})
