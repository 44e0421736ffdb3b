"""Losses on the shared latent: label-free (they use only which identity an image is, which every
dataset has, never a pose or expression label), computed on the encoder's codes of a batch.

Every entry maps codes (N identities, B, ...) -> a scalar, in float32. They are terms of
config.loss like the image losses (encdec_jax/losses/__init__.py), e.g. "ssim,mae,latent_match:1".

latent_match: how much of the code tells the identity. A swap decodes A's code with B's decoder,
  which only ever saw B's codes: where the codes of A and B differ in distribution (the diagnosis
  "latent not shared", report.diagnose), B's decoder meets codes it never learned and paints its
  average face. Per code unit f, with mu_if the mean of identity i's codes in the batch, sd_if
  their standard deviation, and var_f the variance over all identities' codes:

      sum_f mean_i [(mu_if - mean_j mu_jf)^2 + spread (sd_if - mean_j sd_jf)^2]  /  sum_f var_f,

  the share of the code's variance that lies between identities (a Fisher ratio over all units),
  first and second moments. 0 when every identity's codes have the same mean and spread; it is
  invariant to the code's scale, so shrinking the codes does not lower it. With B samples per
  identity its value for identically distributed codes is about (N-1)/(N*B) (sampling noise).
  A ratio of sums, not a mean of per-unit ratios: with per-unit ratios a dead unit (no variance)
  scores 0 and so lowers the mean, and the encoder learned to kill its units until the whole
  model collapsed (the small Original, warp 0, 1500 steps: face MAE 0.06 -> 0.37).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp


def latent_match(z_NxBx___, *, spread: float = 1.0):
  """The between-identity share of the codes' variance (module docstring); `spread` weights the
  standard-deviation part against the means'."""
  z = jnp.asarray(z_NxBx___, jnp.float32)
  n, b = z.shape[:2]
  z = z.reshape(n, b, -1)
  mu_i = z.mean(1)                                   # (N, F)
  sd_i = jnp.sqrt(z.var(1) + 1e-12)
  var = z.reshape(n * b, -1).var(0)                  # (F,)
  between = ((mu_i - mu_i.mean(0)) ** 2).mean(0) + spread * ((sd_i - sd_i.mean(0)) ** 2).mean(0)
  return between.sum() / (var.sum() + 1e-12)


LATENT_LOSSES: dict[str, Callable] = {"latent_match": latent_match}
