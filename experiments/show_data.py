"""Writes a grid of synthetic faces: python -m experiments.show_data [--out=docs/synthetic_faces.png]

Rows are identities; the first columns are random training-style draws, the last ones are one
set of factors (pose, expression, lighting, background) rendered as every identity: the
ground-truth swaps the evaluation compares against.
"""
import numpy as np
from absl import flags

from experiments import _cli

from encdec_jax import images
from encdec_jax.data import render as R

_OUT = flags.DEFINE_string("out", "docs/synthetic_faces.png", "output PNG")
_IDS = flags.DEFINE_integer("identities", 6, "rows")
_RES = flags.DEFINE_integer("resolution", 64, "pixels")
_SEED = flags.DEFINE_integer("seed", 0, "family of faces (config.data.seed)")


def main(argv):
  del argv
  _cli.start()
  n, r = _IDS.value, _RES.value
  shared = [R.sample_factors(np.random.default_rng([99, k])) for k in range(2)]
  frame = R.identity_traits(_SEED.value, 0)
  rows = []
  for i in range(n):
    t = R.identity_traits(_SEED.value, i)
    own = [R.sample_factors(np.random.default_rng([_SEED.value, i, k])) for k in range(4)]
    rows.append(np.stack([R.render(t, f, r).image for f in own + shared]
                         + [R.render(frame, f, r, face=t).image for f in shared]))
  images.save_png(_OUT.value, images.grid(np.stack(rows), pad=2), scale=2)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  _cli.run(main)
