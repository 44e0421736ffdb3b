"""Decoding held-out or training images with every identity's decoder, and converting the result
as a user sees it (encdec_jax/convert.py): the helpers that evaluation, calibration, previews and
inference share."""
from __future__ import annotations

import jax
import numpy as np

from encdec_jax import convert as convert_lib
from encdec_jax import models


def make_decode_all(model):
  """jit(params, x_BxHxWxC) -> (N, B, H, W, 3 or 4), x decoded by every identity's decoder (RGB,
  plus the learned mask where the model has one), at the input's resolution: an architecture
  that outputs more (dfaker, 2x) is resized down with an antialiased bilinear filter, so metrics
  compare every architecture at the data's resolution."""
  def f(params, x):
    return models.to_resolution(model.apply(params, x, method="decode_all"), x.shape[1])
  return jax.jit(f)


def decode_batched(params, decode_all, x, batch: int = 64):
  """(rgb (N, n, H, W, 3), learned mask (N, n, H, W, 1) or None) for all of x."""
  y = np.concatenate([np.asarray(decode_all(params, x[k:k + batch])) for k in range(0, len(x), batch)],
                     axis=1)
  return models.split_output(y)


def converted(x, rgb_j, learned_j, data_masks):
  """The convert of one decoder's outputs for inputs x: learned mask, else the data's, else the
  soft ellipse."""
  m = convert_lib.choose_mask(learned_j, data_masks, x.shape[1], len(x))
  return convert_lib.convert(x, rgb_j, m)


def take_off(rgb_BxHxWx3, shift_3) -> np.ndarray:
  """Decoded faces with a colour shift (encdec_jax/calibration.py) taken off, clipped to [0, 1]."""
  return np.clip(np.asarray(rgb_BxHxWx3, np.float32) - np.asarray(shift_3, np.float32), 0.0, 1.0)


def calibrated(rgb_NxBxHxWx3, shifts_Nx3, i: int) -> np.ndarray:
  """Every decoder's output for identity i's faces with its shift into that decoder taken off;
  decoder i's own (the reconstruction) as it is."""
  return np.stack([r if j == i else take_off(r, shifts_Nx3[j]) for j, r in enumerate(rgb_NxBxHxWx3)])
