"""Pixel helpers shared by the data, alignment, judges, evaluation and models: stored bytes to
floats in [0, 1], one bilinear sampler and one Gaussian blur (numpy, or jax.numpy inside a jitted
function)."""
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


def gaussian_matrix(n: int, sigma_px: float) -> np.ndarray:
  """(n, n) row-normalised Gaussian blur along one axis, edges renormalised (no dark border)."""
  i = np.arange(n, dtype=np.float64)
  k = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma_px) ** 2)
  return (k / k.sum(1, keepdims=True)).astype(np.float32)


def gaussian_blur(x_BxHxWxC, sigma_px: float, xp=np):
  """x blurred by a Gaussian of `sigma_px` pixels, edges renormalised (a flat image stays flat):
  rows, then columns, two matrix products (a three-operand einsum sums over every (h, w) pair per
  output pixel, 30x slower at 32 px)."""
  _, h, w, _ = x_BxHxWxC.shape
  rows = xp.einsum("ih,bhwc->biwc", gaussian_matrix(h, sigma_px), x_BxHxWxC)
  return xp.einsum("jw,biwc->bijc", gaussian_matrix(w, sigma_px), rows)
