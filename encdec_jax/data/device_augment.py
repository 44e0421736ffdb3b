"""The training augmentation (flip, colour jitter, Deepfakes random warp) as a jitted JAX function.

The numpy pipeline (encdec_jax/data/pipeline.py) does the float work on one host thread:
600-1400 img/s, enough for a CPU step (~7 img/s) but not for a GPU (4,700-19,000 img/s measured
on an H200, BENCHMARKS.md). With `data.augment_on="device"` the host only gathers the uint8
images and draws the random parameters (the same draws, in the same order, as the numpy path:
`pipeline.draw_augment`), and this function does the arithmetic on the accelerator, sharded like
the batch. It computes the same function as `pipeline.apply_augment` (float32 instead of numpy's
float64 sampling grid: equal to ~1e-5, tested).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax.data.pipeline import Augment


def _resize_grid(g_Bx5x5, size: int):
  """Bilinear (align-corners) upsampling of coarse grids, as pipeline._bilinear_resize_grid."""
  n = g_Bx5x5.shape[-1]
  t = np.linspace(0, n - 1, size)
  i0 = np.clip(np.floor(t).astype(int), 0, n - 2)
  w = jnp.asarray(t - i0, jnp.float32)
  rows = g_Bx5x5[:, i0, :] * (1 - w)[None, :, None] + g_Bx5x5[:, i0 + 1, :] * w[None, :, None]
  return rows[:, :, i0] * (1 - w)[None, None, :] + rows[:, :, i0 + 1] * w[None, None, :]


def _remap(img_BxHxWxC, map_y, map_x):
  """Bilinear sampling at (map_y, map_x), edges clamped, as pipeline._remap_bilinear."""
  b, h, w, _ = img_BxHxWxC.shape
  y0f, x0f = jnp.floor(map_y), jnp.floor(map_x)
  wy, wx = (map_y - y0f)[..., None], (map_x - x0f)[..., None]
  y0 = jnp.clip(y0f.astype(jnp.int32), 0, h - 1)
  x0 = jnp.clip(x0f.astype(jnp.int32), 0, w - 1)
  y1, x1 = jnp.clip(y0 + 1, 0, h - 1), jnp.clip(x0 + 1, 0, w - 1)
  bi = jnp.arange(b)[:, None, None]
  return ((img_BxHxWxC[bi, y0, x0] * (1 - wx) + img_BxHxWxC[bi, y0, x1] * wx) * (1 - wy)
          + (img_BxHxWxC[bi, y1, x0] * (1 - wx) + img_BxHxWxC[bi, y1, x1] * wx) * wy)


def augment(raw: dict, a: Augment) -> tuple[jax.Array, jax.Array, jax.Array]:
  """raw: 'images', 'masks' uint8 (B, H, W, C) and the drawn parameters of `pipeline.draw_augment`
  for those rows. -> (inputs, targets, masks), float32 in [0, 1]."""
  x = raw["images"].astype(jnp.float32) / 255.0
  m = raw["masks"].astype(jnp.float32) / 255.0
  if a.flip:
    f = raw["flip"][:, None, None, None]
    x = jnp.where(f, x[:, :, ::-1], x)
    m = jnp.where(f, m[:, :, ::-1], m)
  if a.color_jitter > 0:
    x = jnp.clip(x * raw["gain"] + raw["bias"], 0, 1)
  if not a.warp:
    return x, x, m
  b, h, w, _ = x.shape
  base = jnp.linspace(0, 1, 5, dtype=jnp.float32)
  gy, gx = jnp.meshgrid(base, base, indexing="ij")
  map_y = _resize_grid(gy[None] + raw["warp_y"], h) * (h - 1)
  map_x = _resize_grid(gx[None] + raw["warp_x"], w) * (w - 1)
  return _remap(x, map_y, map_x), x, m


def augment_batch(raw: dict, a: Augment) -> dict:
  """The (N identities, B, ...) layout of TrainSource.raw_batch -> {'inputs', 'targets', 'masks'}."""
  n = raw["images"].shape[0]
  flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in raw.items()}
  out = augment(flat, a)
  return {k: v.reshape((n, -1) + v.shape[1:]) for k, v in zip(("inputs", "targets", "masks"), out)}
