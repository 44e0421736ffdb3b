"""What the synthetic faces are, in pure numpy (no TensorFlow): their version, the name of a set
of settings, each example's factors, and face swaps of training examples for the judges.

encdec_jax/data/synthetic_faces.py stores them as a TFDS dataset; this module is what a machine
without TensorFlow (a typical JAX GPU container) needs to use an exported copy.
"""
from __future__ import annotations

import os

import numpy as np

from encdec_jax.data import render as R

# 2.1.0: stored as array_record, read back with numpy and PIL (no TensorFlow), the same arrays;
# 2.0.0: true face swaps (+ masks, landmarks); masks are of the visible face (not under hair);
# brow colour is a face trait. A cache of another version lives in another folder: never misread.
VERSION = "2.1.0"
_SPLIT_IDS = {"train": 0, "test": 1}


def config_name(resolution, identities, seed, train_per_identity, test_per_identity) -> str:
  return f"r{resolution}_n{identities}_s{seed}_t{train_per_identity}_h{test_per_identity}"


def example_factors(seed: int, split: str, identity: int, index: int) -> np.ndarray:
  """Factors of one example: a pure function of (seed, split, identity, index)."""
  return R.sample_factors(np.random.default_rng([seed, 104729, _SPLIT_IDS[split], identity, index]))


def default_data_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "encdec_jax", "tfds")


def training_face_swaps(seed: int, identities: int, resolution: int, train_per_identity: int) -> dict:
  """Every training example's frame with another identity's face (identity i's k-th example gets
  the face of the (k mod (N-1))-th other identity), labelled with that face's identity: arrays
  image, mask, landmarks (uint8 / float32), identity, factors. `mask` is the frame's own (the
  example's), as when a swap is judged inside its source's mask; `landmarks` are the face's.
  Fitted on together with the real training images, the judges cannot use the frame (head size,
  hairline, hair, the mask's outline) to tell identities apart: in the data alone frame and
  identity always go together."""
  traits = [R.identity_traits(seed, i) for i in range(identities)]
  out = {k: [] for k in ("image", "mask", "landmarks", "identity", "factors")}
  for i in range(identities):
    others = [j for j in range(identities) if j != i]
    for k in range(train_per_identity):
      j = others[k % len(others)]
      f = example_factors(seed, "train", i, k)
      r = R.render(traits[i], f, resolution, face=traits[j])
      frame_mask = R.render(traits[i], f, resolution).mask
      for key, v in (("image", R.to_uint8(r.image)), ("mask", R.to_uint8(frame_mask)),
                     ("landmarks", r.landmarks), ("identity", j), ("factors", f.astype(np.float32))):
        out[key].append(v)
  return {k: np.asarray(v) for k, v in out.items()}
