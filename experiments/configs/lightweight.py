"""faceswap's Lightweight (~2 GB cards): 3 encoder convs, Dense 512, small decoders; 64x64.

  python -m experiments.train --config=experiments/configs/lightweight.py:small --workdir=runs/lw
"""
from experiments.configs._arch import derive


def get_config(arg: str | None = None):
  return derive("lightweight", arg, {"model.bottleneck": 512},
                small={"model.bottleneck": 128}, tiny={"model.bottleneck": 32})
