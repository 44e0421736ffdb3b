"""Decoding held-out or training images with every identity's decoder, and converting the result
as a user sees it (encdec_jax/convert.py): the helpers that evaluation, calibration, previews and
inference share."""
from __future__ import annotations

import jax
import numpy as np

from encdec_jax import convert as convert_lib
from encdec_jax import models


def make_decode_all(model):
  """jit(params, x_BxHxWxC, maps=None) -> (N, B, H, W, 3 or 4), x decoded by every identity's
  decoder (RGB, plus the learned mask where the model has one), at the input's resolution: an
  architecture that outputs more (dfaker, 2x) is resized down with an antialiased bilinear
  filter, so metrics compare every architecture at the data's resolution. `maps`: the codes as
  each decoder reads them (codematch.maps of the source identity)."""
  def f(params, x, maps=None):
    return models.to_resolution(model.apply(params, x, maps, method="decode_all"), x.shape[1])
  return jax.jit(f)


BATCH = 64  # images per call of decode_all: a program is compiled per distinct call shape


def decode_batched(params, decode_all, x, batch: int = BATCH, maps=None):
  """(rgb (N, n, H, W, 3), learned mask (N, n, H, W, 1) or None) for all of x; `maps`: the code
  matching of x's identity (codematch.maps), passed to decode_all where given."""
  extra = () if maps is None else (maps,)
  y = np.concatenate([np.asarray(decode_all(params, x[k:k + batch], *extra)) for k in range(0, len(x), batch)],
                     axis=1)
  return models.split_output(y)


def converted(shown, rgb_j, learned_j, data_masks, transforms=None, face_type=None):
  """The convert of one decoder's outputs (aligned crops) with the learned mask, else the data's,
  else the face type's soft ellipse: pasted back into the frames `shown` by `transforms` (frame
  pixels -> crop pixels; convert.into_frames, the path photos take), or, without transforms,
  blended into the crops `shown` themselves."""
  s = rgb_j.shape[1]
  m = convert_lib.choose_mask(learned_j, data_masks, s, len(rgb_j), face_type)
  if transforms is None:
    return convert_lib.convert(shown, rgb_j, m)
  return convert_lib.into_frames(shown, rgb_j, m, transforms, face_type=face_type)


def take_off(rgb_BxHxWx3, shift_3) -> np.ndarray:
  """Decoded faces with a colour shift (encdec_jax/calibration.py) taken off, clipped to [0, 1]."""
  return np.clip(np.asarray(rgb_BxHxWx3, np.float32) - np.asarray(shift_3, np.float32), 0.0, 1.0)


def calibrated(rgb_NxBxHxWx3, shifts_Nx3, i: int) -> np.ndarray:
  """Every decoder's output for identity i's faces with its shift into that decoder taken off;
  decoder i's own (the reconstruction) as it is."""
  return np.stack([r if j == i else take_off(r, shifts_Nx3[j]) for j, r in enumerate(rgb_NxBxHxWx3)])
