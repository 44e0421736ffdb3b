"""Writes a grid of synthetic faces: python -m experiments.show_data [--out=docs/synthetic_faces.png]

Rows are identities. Columns come in pairs: a frame (the head with its hair, what a swap is
pasted back into) and its aligned crop (config.data.face_type: what the model sees), shown at
the frame's size. The first three pairs are random draws of the row's identity; the last pair is
the true face swap of the first identity's frame with the row's face, in its frame and in the
first identity's crop (what the evaluation compares a swap against).
"""
import numpy as np
from absl import flags

from experiments import _cli

from encdec_jax import images
from encdec_jax.data import render as R, synthetic

_OUT = flags.DEFINE_string("out", "docs/synthetic_faces.png", "output PNG")
_IDS = flags.DEFINE_integer("identities", 6, "rows")
_RES = flags.DEFINE_integer("resolution", 32, "the crops' side in pixels (config.data.resolution)")
_SEED = flags.DEFINE_integer("seed", 0, "family of faces (config.data.seed)")
_FACE_TYPE = flags.DEFINE_string("face_type", "whole_face", "config.data.face_type")


def main(argv):
  del argv
  _cli.start()
  n, r, fr = _IDS.value, _RES.value, 2 * _RES.value
  shared = R.sample_factors(np.random.default_rng([99, 0]))
  first = R.identity_traits(_SEED.value, 0)

  def pair(t, f, face=None, cut=None):
    a = synthetic.transform(cut or t, f, r, fr, _FACE_TYPE.value)
    crop = R.render(t, f, r, face=face, view=R.crop_view(fr, a)).image
    return [R.render(t, f, fr, face=face).image, images.fit(crop[None], fr)[0]]

  rows = []
  for i in range(n):
    t = R.identity_traits(_SEED.value, i)
    own = [R.sample_factors(np.random.default_rng([_SEED.value, i, k])) for k in range(3)]
    rows.append(np.stack(sum((pair(t, f) for f in own), []) + pair(first, shared, face=t)))
  images.save_png(_OUT.value, images.grid(np.stack(rows), pad=2), scale=2)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  _cli.run(main)
