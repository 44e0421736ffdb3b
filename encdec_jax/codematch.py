"""Code matching of swaps (config.eval.code_match='train'): the source's shared code moved, unit by
unit, from the source identity's code statistics onto the target identity's before decoder j
reads it, measured on training faces, as the colour calibration (encdec_jax/calibration.py) moves
a swap's colour.

Decoder j learns only from identity j's codes. Where identity i's codes sit elsewhere or spread
otherwise (the latent is not fully shared), decoder j reads a source's expression at another
scale: an open mouth drawn too small, say. Per code unit f (every element of the encoder's
output), with mu_if and sd_if the mean and standard deviation of identity i's training codes,

    z -> (z - mu_i) * sd_j / sd_i + mu_j           (a swap i -> j; i -> i unchanged),

the map that carries one normal distribution per unit onto the other (the Gaussian optimal
transport with diagonal covariances). Only training images enter: no held-out image, no true
swap, no judge, no label but the identity, which every dataset has. One map per ordered pair and
checkpoint. It assumes both identities' training faces show the same spread of poses and
expressions (true of the synthetic data); richer maps measured against it: BENCHMARKS.md,
"Recipe".
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from encdec_jax.pixels import to_unit_float

PER_IDENTITY = 1024  # training faces per identity whose codes are measured; the first, in stored order
BATCH = 64
# A unit's spread is floored at this fraction of the mean spread over units: a unit (nearly) dead
# for one identity is not blown up by a huge ratio.
SD_FLOOR = 0.05


def _encode(model, params, x):
  return model.apply(params, x, method="encode")


# One compile per (model, shapes): runs of equal model configs (flax modules compare by their
# fields) share it, so a sweep's grid measures its runs' codes with one compile per architecture
# and bottleneck, not one per run.
_encode_jit = jax.jit(_encode, static_argnums=0)


def make_encode(model):
  """(params, x_BxHxWxC) -> the shared encoder's codes (B, ...), jitted."""
  return functools.partial(_encode_jit, model)


def code_stats(params, encode, trn: dict, num_identities: int, per_identity: int = PER_IDENTITY):
  """(mean (N, ...), spread (N, ...)) float32 of every identity's codes of its first
  `per_identity` training faces; the spread floored (SD_FLOOR)."""
  mu, sd = [], []
  for i in range(num_identities):
    sel = np.flatnonzero(np.asarray(trn["identity"]) == i)[:per_identity]
    if len(sel) < 2:
      raise ValueError(f"code matching: identity {i} has {len(sel)} training images; it needs 2")
    x = to_unit_float(trn["image"][sel])
    pad = -len(x) % BATCH  # whole batches: one call shape, one compile
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    z = np.concatenate([np.asarray(encode(params, xp[k:k + BATCH]), np.float32)
                        for k in range(0, len(xp), BATCH)])[:len(x)]
    mu.append(z.mean(0))
    sd.append(z.std(0))
  mu, sd = np.stack(mu), np.stack(sd)
  return mu, np.maximum(sd, SD_FLOOR * float(sd.mean())).astype(np.float32)


def maps(stats, i: int):
  """(scale (N, ...), offset (N, ...)) float32: the codes of identity i's faces as each decoder j
  reads them, z * scale[j] + offset[j] (module docstring); j == i: scale 1, offset 0."""
  mu, sd = stats
  scale = sd / sd[i]
  offset = mu - mu[i] * scale
  scale[i], offset[i] = 1.0, 0.0
  return scale.astype(np.float32), offset.astype(np.float32)


def into(stats, j: int):
  """(scale, offset) for decoder j alone, for faces whose identity is not known (a user's photos):
  from the mean statistics of the other identities (with two identities, the other one's)."""
  mu, sd = stats
  others = [i for i in range(len(mu)) if i != j]
  mu_s, sd_s = mu[others].mean(0), sd[others].mean(0)
  scale = sd[j] / sd_s
  return scale.astype(np.float32), (mu[j] - mu_s * scale).astype(np.float32)
