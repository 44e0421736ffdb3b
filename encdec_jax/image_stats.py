"""Statistics of image batches that evaluation reports: MAE/SSIM/PSNR inside a region, sharpness as
a blur, variation over inputs, and the colour gap between two batches."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax.losses.common import weighted_mean
from encdec_jax.losses.structural import ssim_cs_maps
from encdec_jax.losses.swap import mean_colour

BLUR_SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # px, at the data's resolution


@jax.jit
def pair_metrics(pred, target, region=None):
  """Per-example MAE, SSIM and PSNR (peak 1) of images in [0, 1]; with `region` (B, H, W, 1) in
  [0, 1], weighted by it (SSIM: its windows weighted by the region at their centres)."""
  pred, target = jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)
  err = pred - target
  mse = weighted_mean(err * err, region)
  window = min(11, pred.shape[1], pred.shape[2])
  s, _ = ssim_cs_maps(pred, target, window, 1.5)
  o = (window - 1) // 2
  r = None if region is None else region[:, o:o + s.shape[1], o:o + s.shape[2]]
  return {"mae": weighted_mean(jnp.abs(err), region), "ssim": weighted_mean(s, r),
          "psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))}


def mean_pair_metrics(pred, target, region=None) -> dict[str, float]:
  """pair_metrics averaged over the batch, as python floats."""
  return {k: float(np.mean(v)) for k, v in pair_metrics(pred, target, region).items()}


def blur(x_BxHxWxC, sigma: float) -> np.ndarray:
  """Gaussian blur over H and W (separable, truncated at 4 sigma, edges repeated)."""
  x = np.asarray(x_BxHxWxC, np.float32)
  if sigma == 0:
    return x
  r = int(4 * sigma + 0.5)
  t = np.arange(-r, r + 1)
  w = np.exp(-0.5 * (t / sigma) ** 2)
  w = (w / w.sum()).astype(np.float32)
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (r, r)
    xp, n = np.pad(x, pad, mode="edge"), x.shape[axis]
    x = sum(wk * np.take(xp, np.arange(k, k + n), axis=axis) for k, wk in enumerate(w))
  return x


def sharpness(raw_recon, x, face) -> float:
  """The sigma of BLUR_SIGMAS whose blur of x is nearest (face-weighted MAE) the decoder's raw
  reconstruction of x: how sharp the decoder draws."""
  errs = [mean_pair_metrics(raw_recon, blur(x, s), face)["mae"] for s in BLUR_SIGMAS]
  return BLUR_SIGMAS[int(np.argmin(errs))]


def variation(out, truth, region) -> float:
  """The per-pixel standard deviation over the batch of `out`, summed inside `region` (H, W, 1)
  in [0, 1], over the same for `truth`: 1 when the outputs vary as the truth does, 0 when they
  are one image."""
  sd = lambda a: (np.asarray(a, np.float32).std(0) * region).sum()
  return float(sd(out) / max(sd(truth), 1e-12))


def colour_gap(swaps, truth, region) -> np.ndarray:
  """(C,): the swaps' mean colour minus the true swaps' inside `region` (B, H, W, 1), measured as
  the swap_tone loss measures it."""
  return np.asarray(mean_colour(swaps, region) - mean_colour(truth, region), np.float32)


def tone_gap(swaps, truth, region) -> float:
  """colour_gap averaged over channels: > 0 where the swaps are lighter than the target's skin."""
  return float(colour_gap(swaps, truth, region).mean())


def tone_matched(swaps, truth, region) -> np.ndarray:
  """The swaps with the pair's mean colour gap to the true swaps (per channel, inside `region`)
  taken off inside the region: one constant shift for all of them. Judged, it says how much of a
  failed identity transfer is the tone alone (a diagnosis: it uses the truth)."""
  gap = colour_gap(swaps, truth, region)
  return np.clip(np.asarray(swaps, np.float32) - gap * region, 0.0, 1.0)
