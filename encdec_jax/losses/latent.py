"""Losses on the shared latent: label-free (they use only which identity an image is, which every
dataset has, never a pose or expression label), computed on the encoder's codes of a batch.

Every entry maps codes (N identities, B, ...) -> a scalar, in float32. They are terms of
config.loss like the image losses (encdec_jax/losses/__init__.py), e.g. "ssim,mae,latent_match:1".

latent_match: how much of the code tells the identity. A swap decodes A's code with B's decoder,
  which only ever saw B's codes: where the codes of A and B differ in distribution (the diagnosis
  "latent not shared", report.diagnose), B's decoder meets codes it never learned and paints its
  average face. Per code unit f, with mu_i the mean of identity i's codes in the batch, sd_i their
  standard deviation, and mu, var the mean and variance over all identities' codes:

      sum_i [(mu_i - mu)^2 + (sd_i - mean_j sd_j)^2] / N / (var + eps),   averaged over units,

  the share of each unit's variance that is between identities (a Fisher ratio), first and second
  moments. 0 when every identity's codes have the same mean and spread; it is invariant to the
  code's scale, so shrinking the codes does not lower it. With B samples per identity its value
  for identically distributed codes is about (N-1)/(N*B) (sampling noise), not 0.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

EPS = 1e-3  # x the mean variance of the units: a unit with no variance adds nothing


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
  return (between / (var + EPS * var.mean() + 1e-12)).mean()


LATENT_LOSSES: dict[str, Callable] = {"latent_match": latent_match}
