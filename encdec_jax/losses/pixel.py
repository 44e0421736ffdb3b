"""Per-pixel losses: each takes (pred, target, mask=None) and returns (B,). A mask (B, H, W, 1|C)
weights the per-pixel loss (weighted mean)."""
from __future__ import annotations

import jax.numpy as jnp

from encdec_jax.losses.common import f32, weighted_mean


def mae(pred, target, mask=None):
  """Mean absolute error."""
  pred, target = f32(pred, target)
  return weighted_mean(jnp.abs(pred - target), mask)


def mse(pred, target, mask=None):
  """Mean squared error."""
  pred, target = f32(pred, target)
  return weighted_mean(jnp.square(pred - target), mask)


def logcosh(pred, target, mask=None):
  """Mean log(cosh(d)), computed as |d| + log1p(exp(-2|d|)) - log 2 (no overflow)."""
  pred, target = f32(pred, target)
  a = jnp.abs(pred - target)
  return weighted_mean(a + jnp.log1p(jnp.exp(-2.0 * a)) - jnp.log(2.0), mask)


def smooth_l1(pred, target, mask=None, *, delta: float = 0.1):
  """Huber loss: 0.5 d^2 where |d| <= delta, delta (|d| - 0.5 delta) beyond (Huber 1964)."""
  pred, target = f32(pred, target)
  a = jnp.abs(pred - target)
  quad = jnp.minimum(a, delta)
  return weighted_mean(0.5 * quad ** 2 + delta * (a - quad), mask)


def robust(pred, target, mask=None, *, alpha: float = 1.0, scale: float = 0.1):
  """Barron (2019), "A General and Adaptive Robust Loss Function", eq. 1 with its limits:
  alpha=2 is L2, alpha=0 Cauchy/log, alpha=1 pseudo-Huber / Charbonnier, alpha=-inf Welsch."""
  pred, target = f32(pred, target)
  z = jnp.square((pred - target) / scale)
  if alpha == 2.0:
    rho = 0.5 * z
  elif alpha == 0.0:
    rho = jnp.log1p(0.5 * z)
  elif alpha == float("-inf"):
    rho = 1.0 - jnp.exp(-0.5 * z)
  else:
    b = abs(alpha - 2.0)
    rho = (b / alpha) * (jnp.power(z / b + 1.0, 0.5 * alpha) - 1.0)
  return weighted_mean(rho, mask)


def l_inf_norm(pred, target, mask=None):
  """The largest absolute error of each example (inside the mask, if given)."""
  pred, target = f32(pred, target)
  a = jnp.abs(pred - target)
  if mask is not None:
    a = a * jnp.broadcast_to(jnp.asarray(mask, jnp.float32), a.shape)
  return jnp.max(a, axis=(1, 2, 3))


def pixel_gradient_diff(pred, target, mask=None):
  """Mean |dx pred - dx target| + |dy pred - dy target| (forward differences)."""
  pred, target = f32(pred, target)
  d = pred - target
  gx = jnp.abs(d[:, :, 1:] - d[:, :, :-1])
  gy = jnp.abs(d[:, 1:] - d[:, :-1])
  if mask is None:
    return jnp.mean(gx, axis=(1, 2, 3)) + jnp.mean(gy, axis=(1, 2, 3))
  m = jnp.asarray(mask, jnp.float32)
  return weighted_mean(gx, m[:, :, 1:]) + weighted_mean(gy, m[:, 1:])
