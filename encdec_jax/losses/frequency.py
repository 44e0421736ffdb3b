"""Losses on frequency bands: focal frequency loss and Laplacian pyramid loss."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from encdec_jax.losses.common import f32, gaussian_1d, separable


def ffl(pred, target, mask=None, *, alpha: float = 1.0):
  """Focal frequency loss (Jiang et al. 2021): per channel 2-D DFT (orthonormal), squared
  distance of the spectra weighted by its own |distance|^alpha normalised to [0, 1] per image,
  weights without gradient; mean over frequencies and channels."""
  del mask
  pred, target = f32(pred, target)
  fp = jnp.fft.fft2(jnp.moveaxis(pred, -1, 1), norm="ortho")
  ft = jnp.fft.fft2(jnp.moveaxis(target, -1, 1), norm="ortho")
  d = jnp.abs(fp - ft) ** 2  # (B, C, H, W)
  w = jax.lax.stop_gradient(jnp.sqrt(d) ** alpha)
  wmax = jnp.max(w, axis=(2, 3), keepdims=True)
  w = jnp.where(wmax > 0, w / jnp.where(wmax > 0, wmax, 1.0), 0.0)
  return jnp.mean(w * d, axis=(1, 2, 3))


def _blur(x, g):
  p = g.shape[0] // 2
  x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
  return separable(x, g)


def laplacian_pyramid(x, levels: int, size: int = 5, sigma: float = 1.0):
  """Band-pass levels x - up(down(x)) (Burt & Adelson 1983), then the low-pass residual."""
  g = gaussian_1d(size, sigma)
  bands = []
  for _ in range(levels):
    low = _blur(x, g)
    down = low[:, ::2, ::2]
    up = jnp.repeat(jnp.repeat(down, 2, axis=1), 2, axis=2)[:, :x.shape[1], :x.shape[2]]
    bands.append(x - _blur(up, g))
    x = down
  bands.append(x)
  return bands


def laploss(pred, target, mask=None, *, levels: int = 4):
  """Laplacian pyramid loss (Bojanowski et al. 2018): sum over levels j of 2^(-2j) x the mean L1
  distance of level j. Levels are capped at log2(size) - 1, so the low-pass residual keeps at
  least 2 x 2 pixels."""
  del mask
  pred, target = f32(pred, target)
  n = min(levels, max(1, int(math.log2(min(pred.shape[1], pred.shape[2]))) - 1))
  total = 0.0
  for j, (a, b) in enumerate(zip(laplacian_pyramid(pred, n), laplacian_pyramid(target, n))):
    total = total + 2.0 ** (-2 * j) * jnp.mean(jnp.abs(a - b), axis=(1, 2, 3))
  return total
