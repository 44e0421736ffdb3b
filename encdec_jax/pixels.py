"""Pixel helpers shared by the data, alignment, judges and evaluation: stored bytes to floats in
[0, 1], and one bilinear sampler (numpy, or jax.numpy inside a jitted function)."""
from __future__ import annotations

import numpy as np


def to_unit_float(a, xp=np):
  """Stored pixels as float32 in [0, 1]: uint8 (0..255) scaled by 1/255; floats (already in
  [0, 1]) only cast."""
  a = xp.asarray(a)
  if a.dtype == np.uint8:
    return a.astype(xp.float32) / 255.0
  return a.astype(xp.float32)


def remap_bilinear(img_BxHxWxC, map_y, map_x, xp=np):
  """img sampled at (map_y, map_x), float pixel coordinates of shape (B, ...), with bilinear
  interpolation; coordinates beyond the border take the edge pixels. -> (B, ..., C)."""
  b, h, w, _ = img_BxHxWxC.shape
  y0f, x0f = xp.floor(map_y), xp.floor(map_x)
  wy, wx = (map_y - y0f)[..., None], (map_x - x0f)[..., None]
  y0i, x0i = y0f.astype(np.int32), x0f.astype(np.int32)
  y0, x0 = xp.clip(y0i, 0, h - 1), xp.clip(x0i, 0, w - 1)
  y1, x1 = xp.clip(y0i + 1, 0, h - 1), xp.clip(x0i + 1, 0, w - 1)
  bi = xp.arange(b).reshape((b,) + (1,) * (np.ndim(map_y) - 1))
  return ((img_BxHxWxC[bi, y0, x0] * (1 - wx) + img_BxHxWxC[bi, y0, x1] * wx) * (1 - wy)
          + (img_BxHxWxC[bi, y1, x0] * (1 - wx) + img_BxHxWxC[bi, y1, x1] * wx) * wy)
