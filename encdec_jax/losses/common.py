"""Helpers shared by the loss modules: float32 casting, (masked) means, separable filters."""
from __future__ import annotations

import jax.numpy as jnp


def f32(*xs):
  return [jnp.asarray(x, jnp.float32) for x in xs]


def weighted_mean(per_pixel_BxHxWxC, mask=None):
  """Mean over H, W, C; with a weight map (B, H, W, 1 or C), the weighted mean."""
  if mask is None:
    return jnp.mean(per_pixel_BxHxWxC, axis=(1, 2, 3))
  mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), per_pixel_BxHxWxC.shape)
  return jnp.sum(per_pixel_BxHxWxC * mask, axis=(1, 2, 3)) / jnp.maximum(
      jnp.sum(mask, axis=(1, 2, 3)), 1e-6)


def gaussian_1d(size: int, sigma: float):
  x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
  g = jnp.exp(-0.5 * (x / sigma) ** 2)
  return g / jnp.sum(g)


def _valid_matrix(g, n: int):
  """(n - k + 1, n) matrix whose rows are g shifted: a VALID 1-D correlation as a matmul."""
  k = g.shape[0]
  rows = [jnp.pad(g, (i, n - k - i)) for i in range(n - k + 1)]
  return jnp.stack(rows)


def separable(x_BxHxWxC, g, g_w=None):
  """VALID separable filter: 1-D kernel g along H, then g_w (default g) along W, per channel.

  Two small matrix products instead of grouped convs: XLA:CPU runs the grouped convs' gradients
  slowly (a 32x32 SSIM loss made the whole small-model train step ~30% slower)."""
  _, h, w, _ = x_BxHxWxC.shape
  y = jnp.einsum("oh,bhwc->bowc", _valid_matrix(g, h), x_BxHxWxC)
  return jnp.einsum("pw,bowc->bopc", _valid_matrix(g if g_w is None else g_w, w), y)
