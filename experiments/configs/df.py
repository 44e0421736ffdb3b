"""DeepFaceLab's DF (SAEHD "df"): shared encoder and intermediate, per-identity residual decoders.
Published defaults: 128x128, ae_dims 256 (model.bottleneck), e_dims 64, d_dims 64; 64 to 256 px.

  python -m experiments.train --config=experiments/configs/df.py:small --workdir=runs/df
"""
from experiments.configs._arch import DFL_FULL, DFL_SMALL, DFL_TINY, derive


def get_config(arg: str | None = None):
  return derive("df", arg, DFL_FULL, small=DFL_SMALL, tiny=DFL_TINY)
