"""Image losses and the loss spec that combines them.

Every entry of LOSSES maps (pred, target, mask=None) -> per-example loss of shape (B,), for images
in [0, 1] shaped (B, H, W, C). Computation is float32 whatever the inputs' dtype.
A spec such as "ssim:1.0,mse:0.5" is a weighted sum of registry entries.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


def _f32(*xs):
  return [jnp.asarray(x, jnp.float32) for x in xs]


def _weighted_mean(per_pixel_BxHxWxC, mask):
  """Mean over H, W, C; with a mask (B, H, W, 1 or C), a mask-weighted mean."""
  if mask is None:
    return jnp.mean(per_pixel_BxHxWxC, axis=(1, 2, 3))
  mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), per_pixel_BxHxWxC.shape)
  return jnp.sum(per_pixel_BxHxWxC * mask, axis=(1, 2, 3)) / jnp.maximum(
      jnp.sum(mask, axis=(1, 2, 3)), 1e-6)


def mae(pred, target, mask=None):
  pred, target = _f32(pred, target)
  return _weighted_mean(jnp.abs(pred - target), mask)


def mse(pred, target, mask=None):
  pred, target = _f32(pred, target)
  return _weighted_mean(jnp.square(pred - target), mask)


def _gaussian_window(size: int, sigma: float):
  x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
  g = jnp.exp(-0.5 * (x / sigma) ** 2)
  return g / jnp.sum(g)


def _blur_valid(x_BxHxWxC, g):
  """Separable VALID gaussian filter, per channel."""
  c = x_BxHxWxC.shape[-1]
  k = g.shape[0]
  kh = jnp.tile(g.reshape(k, 1, 1, 1), (1, 1, 1, c))
  kw = jnp.tile(g.reshape(1, k, 1, 1), (1, 1, 1, c))
  dn = ("NHWC", "HWIO", "NHWC")
  y = jax.lax.conv_general_dilated(x_BxHxWxC, kh, (1, 1), "VALID", dimension_numbers=dn,
                                   feature_group_count=c)
  return jax.lax.conv_general_dilated(y, kw, (1, 1), "VALID", dimension_numbers=dn,
                                      feature_group_count=c)


def ssim_map(pred, target, *, window: int = 11, sigma: float = 1.5, k1=0.01, k2=0.03):
  """SSIM map (Wang et al. 2004) with a gaussian window, VALID, as tf.image.ssim computes it."""
  pred, target = _f32(pred, target)
  window = min(window, pred.shape[1], pred.shape[2])
  g = _gaussian_window(window, sigma)
  c1, c2 = k1 ** 2, k2 ** 2
  mu_x, mu_y = _blur_valid(pred, g), _blur_valid(target, g)
  sxx = _blur_valid(pred * pred, g) - mu_x ** 2
  syy = _blur_valid(target * target, g) - mu_y ** 2
  sxy = _blur_valid(pred * target, g) - mu_x * mu_y
  return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


def ssim(pred, target, mask=None):
  """1 - SSIM. A mask weights the SSIM map (cropped to its VALID extent)."""
  m = ssim_map(pred, target)
  if mask is not None:
    mask = jnp.asarray(mask, jnp.float32)
    dh = (mask.shape[1] - m.shape[1]) // 2
    dw = (mask.shape[2] - m.shape[2]) // 2
    mask = mask[:, dh:dh + m.shape[1], dw:dw + m.shape[2]]
  return 1.0 - _weighted_mean(m, mask)


LOSSES: dict[str, Callable] = {"mae": mae, "mse": mse, "ssim": ssim}


@dataclasses.dataclass(frozen=True)
class LossTerm:
  name: str
  weight: float


class LossSpecError(ValueError):
  pass


def parse_loss_spec(spec: str) -> tuple[LossTerm, ...]:
  """"ssim:1.0,mse:0.5" -> (LossTerm('ssim', 1.0), LossTerm('mse', 0.5)). A bare name weighs 1."""
  if not isinstance(spec, str) or not spec.strip():
    raise LossSpecError(f"loss spec must be a non-empty string like 'ssim:1.0,mae:1.0', got {spec!r}")
  terms = []
  for part in spec.split(","):
    part = part.strip()
    name, _, weight = part.partition(":")
    name = name.strip()
    if name not in LOSSES:
      raise LossSpecError(f"unknown loss {name!r} in spec {spec!r}; valid names: {sorted(LOSSES)}")
    try:
      w = float(weight) if weight.strip() else 1.0
    except ValueError:
      raise LossSpecError(f"loss {name!r} in spec {spec!r} has weight {weight!r}, not a number") from None
    if not w > 0 or w != w or w == float("inf"):
      raise LossSpecError(f"loss {name!r} in spec {spec!r} has weight {w}; weights must be finite and > 0")
    if any(t.name == name for t in terms):
      raise LossSpecError(f"loss {name!r} appears twice in spec {spec!r}")
    terms.append(LossTerm(name, w))
  return tuple(terms)


def combined_loss(terms: tuple[LossTerm, ...], pred, target, mask=None):
  """Weighted sum of the terms, per example: returns (total (B,), {name: (B,)})."""
  parts = {t.name: LOSSES[t.name](pred, target, mask) for t in terms}
  total = sum(t.weight * parts[t.name] for t in terms)
  return total, parts
