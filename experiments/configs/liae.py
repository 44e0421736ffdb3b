"""DeepFaceLab's LIAE, for N identities: shared encoder, shared inter_all, per-identity
intermediates for identities 1..N-1, one shared decoder. Identity 0 plays DFL's "src": a swap into
identity 0 is decoder(concat(inter_all(z), inter_all(z))), DFL's pred_src_dst (encdec_jax/models/archs.py).
Published defaults: 128x128, ae_dims 256 (model.bottleneck), e_dims 64, d_dims 64.

  python -m experiments.train --config=experiments/configs/liae.py:small --workdir=runs/liae
"""
from experiments.configs._arch import derive


def get_config(arg: str | None = None):
  return derive("liae", arg,
                {"model.bottleneck": 256, "model.e_dims": 64, "model.d_dims": 64,
                 "data.resolution": 128, "train.batch_size": 8},
                small={"model.bottleneck": 64, "model.width": 0.25, "data.resolution": 32,
                       "train.batch_size": 16},
                tiny={"model.bottleneck": 32, "model.width": 1 / 16, "data.resolution": 16,
                      "train.batch_size": 4, "model.d_dims": 32})
