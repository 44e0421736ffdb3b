"""faceswap's DFaker: Original encoder, residual decoders that output twice the input resolution
(64x64 in, 128x128 out; the loss compares with the target resized 2x, bilinear).

  python -m experiments.train --config=experiments/configs/dfaker.py:small --workdir=runs/dfaker
"""
from experiments.configs._arch import derive


def get_config(arg: str | None = None):
  return derive("dfaker", arg, {"model.bottleneck": 1024},
                small={"model.bottleneck": 128}, tiny={"model.bottleneck": 32})
