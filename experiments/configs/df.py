"""DeepFaceLab's DF (SAEHD "df"): shared encoder and intermediate, per-identity residual decoders.
Published defaults: 128x128, ae_dims 256 (model.bottleneck), e_dims 64, d_dims 64; 64 to 256 px.

  python -m experiments.train --config=experiments/configs/df.py:small --workdir=runs/df
"""
from experiments.configs._arch import derive


def get_config(arg: str | None = None):
  return derive("df", arg,
                {"model.bottleneck": 256, "model.e_dims": 64, "model.d_dims": 64,
                 "data.resolution": 128, "train.batch_size": 8},
                small={"model.bottleneck": 64, "model.width": 0.25, "data.resolution": 32,
                       "train.batch_size": 16},
                tiny={"model.bottleneck": 32, "model.width": 1 / 16, "data.resolution": 16,
                      "train.batch_size": 4, "model.d_dims": 32})
