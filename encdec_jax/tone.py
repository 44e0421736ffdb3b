"""Tone calibration: a swap's face colour moved onto the target identity's, measured on training images.

A decoder that met only its own identity's codes paints another identity's codes in its own guess
of the light: on the default sweep, decoder 0 draws identity 1's faces 0.02-0.03 lighter than
identity 0's skin, and the identity judge reads that tone as the source (BENCHMARKS.md "Recipe,
round 6", block H). Deepfakes' convert adjusts a swapped face's colour before it pastes it
(faceswap's colour-adjustment step); this is that adjustment, with a target a user can check:

  shift[i, j] = mean colour of decoder j's outputs for identity i's training faces
                - mean colour of identity j's own training faces,

both inside the mask the convert pastes through (the learned mask, else the data's face mask, else
the soft face ellipse), per channel; shift[i, i] = 0. A swap i -> j is then clip(decoded - shift).
Only training images enter: no held-out image, no true swap, no judge, no label. One constant per
ordered pair and checkpoint, so a swap's variation over frames (their light) is kept.
`eval.tone='train'` turns it on for evaluation, previews, the sweep's grid and experiments.swap.
"""
from __future__ import annotations

import numpy as np

MODES = ("none", "train")
PER_IDENTITY = 256  # training faces per identity that calibrate; the first ones, in stored order


def calibrate(decode, trn: dict, num_identities: int, per_identity: int = PER_IDENTITY) -> np.ndarray:
  """(N, N, 3) float32: shift[i, j], decoder j's mean colour on identity i's training faces minus
  identity j's own (module docstring); zero on the diagonal. `decode(x_BxHxWx3)` -> (RGB of every
  decoder (N, B, H, W, 3), their learned masks (N, B, H, W, 1) or None)."""
  from encdec_jax import convert, evaluate
  from encdec_jax.losses.swap import mean_colour  # the swap_tone loss's and tone_gap's own measure
  n = num_identities
  decoded = np.zeros((n, n, 3))
  own = np.zeros((n, 3))
  for i in range(n):
    sel = np.flatnonzero(np.asarray(trn["identity"]) == i)[:per_identity]
    if len(sel) == 0:
      raise ValueError(f"tone calibration: identity {i} has no training image")
    x = evaluate._u8(trn["image"][sel])
    data_masks = trn["mask"][sel] if "mask" in trn else None
    rgb, learned = decode(x)
    for j in range(n):
      m = convert.choose_mask(None if learned is None else learned[j], data_masks, x.shape[1], len(x))
      decoded[i, j] = np.asarray(mean_colour(rgb[j], m))
      if j == i:
        own[i] = np.asarray(mean_colour(x, m))
  shift = decoded - own[None, :, :]
  shift[np.arange(n), np.arange(n)] = 0.0
  return shift.astype(np.float32)


def calibrate_params(params, decode_all, trn: dict, num_identities: int, **kw) -> np.ndarray:
  """calibrate with a jitted decode_all(params, x) (encdec_jax/evaluate.py: make_decode_all)."""
  from encdec_jax import evaluate
  return calibrate(lambda x: evaluate.decode_batched(params, decode_all, x), trn, num_identities, **kw)


def into(shift_NxNx3: np.ndarray, j: int) -> np.ndarray:
  """(3,): the shift for swaps into j of faces whose identity is not known (a user's photos): the
  mean over the other identities' shifts into j (with two identities, the other one's)."""
  s = np.asarray(shift_NxNx3)
  others = [i for i in range(s.shape[0]) if i != j]
  return s[others, j].mean(0)


def apply(rgb_BxHxWx3, shift_3) -> np.ndarray:
  """The decoded faces with the shift taken off, clipped to [0, 1]."""
  return np.clip(np.asarray(rgb_BxHxWx3, np.float32) - np.asarray(shift_3, np.float32), 0.0, 1.0)
