"""Losses on the shared latent: label-free (they use only which identity an image is, which every
dataset has, never a pose or expression label), computed on the encoder's codes of a batch.

Every entry maps codes (N identities, B, ...) -> a scalar, in float32. They are terms of
config.loss like the image losses (encdec_jax/losses/__init__.py), e.g. "ssim,mae,latent_match:1".

latent_match: how much of the code tells the identity. A swap decodes A's code with B's decoder,
  which only ever saw B's codes: where the codes of A and B differ in distribution (the diagnosis
  "latent not shared", report.diagnose), B's decoder meets codes it never learned and paints its
  average face. Per code unit f, with mu_if the mean of identity i's codes in the batch, sd_if
  their standard deviation, and var_f the variance over all identities' codes, the share of the
  unit's variance that lies between identities (a Fisher ratio), first and second moments:

      r_f = mean_i [(mu_if - mean_j mu_jf)^2 + spread (sd_if - mean_j sd_jf)^2] / var_f,

  averaged over units with weights w_f = min(1, var_f / median_g var_g), held constant (no
  gradient). 0 when every identity's codes have the same mean and spread; with B samples per
  identity about (N-1)/(N*B) for identically distributed codes (sampling noise). Invariant to
  the code's scale. The weights close two ways to lower it without sharing anything: a dead unit
  weighs 0 (a plain mean over units would reward killing units), and no unit weighs more than 1
  (a ratio of sums lets one unit of huge variance swamp the rest).

  It does not close a third: the ratio is also smallest when the code varies in ways the decoders
  ignore, so a model can meet it by painting one mean face whatever the input. It is a loss to
  compare against, not a recipe (BENCHMARKS.md, "Recipe").

identity_adversary: an identity critic (models.IdentityCritic, config.model.critic_width) learns
  to name the identity from each code, while the encoder learns to leave it guessing (DeepFaceLab's
  "true face", as one loss in one step): the critic's cross-entropy on the codes with their
  gradient stopped (only the critic learns from it) plus, through the critic with its weights
  frozen, the divergence of its answer from the uniform one (only the encoder learns from it):

      CE(critic(sg(z)), identity) + [mean_k -log softmax(critic_sg(z))_k - log N]

  The second part is >= 0, 0 when the critic cannot tell; at that balance the first is log N.
  The term's weight sets the encoder's pull against the images' losses (Adam scales the critic's
  own updates, so the weight hardly changes how fast the critic learns). Unlike latent_match it
  reads identity the way a network can, not only in the codes' first two moments.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
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
  scale = jnp.median(var) + 1e-12
  ratio = between / (var + 1e-6 * scale)
  w = jax.lax.stop_gradient(jnp.minimum(1.0, var / scale))
  return (w * ratio).sum() / (w.sum() + 1e-12)


LATENT_LOSSES: dict[str, Callable] = {"latent_match": latent_match}


def identity_adversary(critic_logits_MxN, encoder_logits_MxN, labels_M):
  """(the term's value, the critic's accuracy) from the critic's logits on the codes with their
  gradient stopped, the frozen critic's logits on the live codes, and each code's identity
  (module docstring)."""
  critic = jnp.asarray(critic_logits_MxN, jnp.float32)
  n = critic.shape[-1]
  logp = jax.nn.log_softmax(critic, axis=-1)
  ce = -jnp.take_along_axis(logp, labels_M[:, None], axis=-1).mean()
  fooled = -jax.nn.log_softmax(jnp.asarray(encoder_logits_MxN, jnp.float32), axis=-1).mean() - math.log(n)
  accuracy = (critic.argmax(-1) == labels_M).mean()
  return ce + fooled, accuracy


# Terms on the codes that train a network of their own (the model's critic): (critic's logits,
# the frozen critic's logits, labels) -> (value, critic accuracy); built by losses/compose.py.
ADVERSARY_LOSSES: dict[str, Callable] = {"identity_adversary": identity_adversary}
