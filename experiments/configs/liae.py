"""DeepFaceLab's LIAE, for N identities: shared encoder, shared inter_all, per-identity
intermediates for identities 1..N-1, one shared decoder. Identity 0 plays DFL's "src": a swap into
identity 0 is decoder(concat(inter_all(z), inter_all(z))), DFL's pred_src_dst (encdec_jax/models/archs.py).
Published defaults: 128x128, ae_dims 256 (model.bottleneck), e_dims 64, d_dims 64.

  python -m experiments.train --config=experiments/configs/liae.py:small --workdir=runs/liae
"""
from experiments.configs._arch import DFL_FULL, DFL_SMALL, DFL_TINY, derive


def get_config(arg: str | None = None):
  return derive("liae", arg, DFL_FULL, small=DFL_SMALL, tiny=DFL_TINY)
