"""Colour calibration of swaps (config.eval.tone='train'): a swap's face colour moved onto the
target identity's, measured on training images, as Deepfakes' convert adjusts a swapped face's
colour before it pastes it.

  shifts[i, j] = mean colour of decoder j's outputs for identity i's training faces
                 - mean colour of identity j's own training faces,

both inside the mask the convert pastes through (the learned mask, else the data's face mask, else
the soft face ellipse), per channel; shifts[i, i] = 0. A swap i -> j is then
clip(decoded - shifts[i, j]) (decode.take_off). Only training images enter: no held-out image, no
true swap, no judge, no label. One constant per ordered pair and checkpoint, so a swap's variation
over frames (their light) is kept. Why this target: BENCHMARKS.md, "Colour calibration".
"""
from __future__ import annotations

import numpy as np

from encdec_jax import codematch, convert
from encdec_jax.decode import decode_batched
from encdec_jax.losses.swap import mean_colour
from encdec_jax.pixels import to_unit_float

PER_IDENTITY = 256  # training faces per identity that calibrate; the first ones, in stored order


def calibrate(decode, trn: dict, num_identities: int, per_identity: int = PER_IDENTITY,
              face_type: str | None = None) -> np.ndarray:
  """(N, N, 3) float32 shifts[i, j] (module docstring); zero on the diagonal. `decode(x_BxHxWx3,
  i)` -> (RGB of every decoder (N, B, H, W, 3), their learned masks (N, B, H, W, 1) or None) of
  identity i's faces x.
  `face_type`: the crops' (config.data.face_type), whose soft ellipse is the mask where the
  model learns none and the data stores none, as in the convert."""
  n = num_identities
  decoded = np.zeros((n, n, 3))
  own = np.zeros((n, 3))
  for i in range(n):
    sel = np.flatnonzero(np.asarray(trn["identity"]) == i)[:per_identity]
    if len(sel) == 0:
      raise ValueError(f"tone calibration: identity {i} has no training image")
    x = to_unit_float(trn["image"][sel])
    data_masks = trn["mask"][sel] if "mask" in trn else None
    rgb, learned = decode(x, i)
    for j in range(n):
      m = convert.choose_mask(None if learned is None else learned[j], data_masks, x.shape[1], len(x),
                              face_type)
      decoded[i, j] = np.asarray(mean_colour(rgb[j], m))
      if j == i:
        own[i] = np.asarray(mean_colour(x, m))
  shifts = decoded - own[None, :, :]
  shifts[np.arange(n), np.arange(n)] = 0.0
  return shifts.astype(np.float32)


def calibrate_params(params, decode_all, trn: dict, num_identities: int, code=None, **kw) -> np.ndarray:
  """calibrate with a jitted decode_all(params, x) (decode.make_decode_all); `code`: the code
  statistics (codematch.code_stats) its swaps are matched with, as the evaluation's are."""
  return calibrate(lambda x, i: decode_batched(params, decode_all, x,
                                               maps=None if code is None else codematch.maps(code, i)),
                   trn, num_identities, **kw)


def into(shifts_NxNx3: np.ndarray, j: int) -> np.ndarray:
  """(3,): the shift for swaps into j of faces whose identity is not known (a user's photos): the
  mean over the other identities' shifts into j (with two identities, the other one's)."""
  s = np.asarray(shifts_NxNx3)
  others = [i for i in range(s.shape[0]) if i != j]
  return s[others, j].mean(0)
