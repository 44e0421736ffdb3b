"""Structural losses: 1 - SSIM, 1 - MS-SSIM, GMSD. Each (pred, target, mask=None) -> (B,)."""
from __future__ import annotations

import jax.numpy as jnp

from encdec_jax.losses.common import f32, gaussian_1d, separable, weighted_mean

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003


def ssim_cs_maps(pred, target, window: int, sigma: float, k1: float = 0.01, k2: float = 0.03):
  """SSIM and contrast-structure maps (Wang et al. 2004), gaussian window, VALID, per channel,
  exactly as tf.image.ssim computes them."""
  g = gaussian_1d(window, sigma)
  c1, c2 = k1 ** 2, k2 ** 2
  mu_x, mu_y = separable(pred, g), separable(target, g)
  sxx = separable(pred * pred, g) - mu_x ** 2
  syy = separable(target * target, g) - mu_y ** 2
  sxy = separable(pred * target, g) - mu_x * mu_y
  cs = (2 * sxy + c2) / (sxx + syy + c2)
  lum = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
  return lum * cs, cs


def ssim(pred, target, mask=None, *, window: int = 11, sigma: float = 1.5):
  """1 - SSIM (gaussian window 11, sigma 1.5), mean of the VALID SSIM map. Masks are applied to
  the inputs by the registry (a window reaches past the mask, so weighting the map would not
  keep pixels outside the mask out of the loss)."""
  del mask
  pred, target = f32(pred, target)
  window = min(window, pred.shape[1], pred.shape[2])
  s, _ = ssim_cs_maps(pred, target, window, sigma)
  return 1.0 - weighted_mean(s)


def ms_ssim_window(size: int, scales: int = 5, window: int = 11) -> int:
  """The largest window <= `window` that fits the coarsest scale (64 px, 5 scales: 4)."""
  return max(1, min(window, size // 2 ** (scales - 1)))


def ms_ssim(pred, target, mask=None, *, scales: int = 5, window: int = 11, sigma: float = 1.5):
  """1 - MS-SSIM (Wang et al. 2003) as tf.image.ssim_multiscale: contrast-structure at the first
  scales, full SSIM at the last, 2x2 average pooling between, the five standard weights
  (renormalised when `scales` < 5). The window shrinks to fit the coarsest scale. Masks are
  applied to the inputs by the caller (not spatially weighted)."""
  del mask
  pred, target = f32(pred, target)
  weights = jnp.asarray(MS_SSIM_WEIGHTS[:scales], jnp.float32)
  if scales < len(MS_SSIM_WEIGHTS):
    weights = weights / jnp.sum(weights)
  win = ms_ssim_window(min(pred.shape[1], pred.shape[2]), scales, window)
  values = []
  for k in range(scales):
    s, cs = ssim_cs_maps(pred, target, win, sigma)
    values.append(jnp.mean(s if k == scales - 1 else cs, axis=(1, 2)))  # (B, C)
    if k < scales - 1:
      pred, target = _pool2(pred), _pool2(target)
  v = jnp.stack(values, axis=-1)
  # relu(v) ** w as TF, with a zero (not NaN) gradient where v <= 0.
  pos = v > 0
  powered = jnp.where(pos, jnp.where(pos, v, 1.0) ** weights, 0.0)
  return 1.0 - jnp.mean(jnp.prod(powered, axis=-1), axis=-1)


def _pool2(x):
  b, h, w, c = x.shape
  h2, w2 = h - h % 2, w - w % 2
  x = x[:, :h2, :w2]
  return x.reshape(b, h2 // 2, 2, w2 // 2, 2, c).mean(axis=(2, 4))


# Prewitt = (1, 1, 1) / 3 along one axis x (1, 0, -1) along the other, applied separably.
_SMOOTH3 = jnp.array([1.0, 1.0, 1.0], jnp.float32) / 3.0
_DIFF3 = jnp.array([1.0, 0.0, -1.0], jnp.float32)


def gmsd(pred, target, mask=None, *, c: float = 0.0026):
  """Gradient magnitude similarity deviation (Xue et al. 2014): per channel, Prewitt gradient
  magnitudes m, GMS = (2 m_p m_t + c) / (m_p^2 + m_t^2 + c), the standard deviation of GMS over
  pixels (c = 170 / 255^2 for images in [0, 1]); averaged over channels."""
  del mask
  pred, target = f32(pred, target)

  def mag(x):
    gx = separable(x, _SMOOTH3, _DIFF3)
    gy = separable(x, _DIFF3, _SMOOTH3)
    return jnp.sqrt(gx ** 2 + gy ** 2 + 1e-12)

  mp, mt = mag(pred), mag(target)
  gms = (2 * mp * mt + c) / (mp ** 2 + mt ** 2 + c)
  var = jnp.var(gms, axis=(1, 2))
  return jnp.mean(jnp.sqrt(var + 1e-12), axis=-1)
