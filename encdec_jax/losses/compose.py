"""How a run's loss is built from the config: the terms of config.loss, the face-mask weighting,
the learned mask's own term, summed over identities.

  loss_fn = make_loss_fn(model, terms)                # (params, batch, settings) -> (loss, metrics)
  settings = loss_settings(terms, cfg.mask)            # one run's numbers
The step (encdec_jax/step.py) takes its gradient; members (encdec_jax/members.py) pass settings
with a leading member axis.
"""
from __future__ import annotations

import jax.numpy as jnp

from encdec_jax import models
from encdec_jax.config import ExperimentConfig, MaskConfig
from encdec_jax.losses import LossTerm, combined_loss, is_latent, mask_weights, mse


def needs_masks(cfg: ExperimentConfig) -> bool:
  """Whether a run's batches need the data's (face, eyes, mouth) masks: the mask-weighted loss
  and the learned mask's target use them."""
  return cfg.mask.enabled or cfg.model.learn_mask


def batch_keys(masks: bool) -> tuple[str, ...]:
  """The keys of a training batch."""
  return ("inputs", "targets") + (("masks",) if masks else ())


def loss_settings(loss_terms, mask_cfg: MaskConfig) -> dict:
  """The loss's numbers as `make_loss_fn` reads them: python values for one run; for members
  (encdec_jax/members.py) arrays with a leading member axis, so each member has its own."""
  return {"term_weights": tuple(t.weight for t in loss_terms), "mask_on": mask_cfg.enabled,
          "eye": mask_cfg.eye_multiplier, "mouth": mask_cfg.mouth_multiplier,
          "learned_weight": mask_cfg.learned_weight}


def make_loss_fn(model, loss_terms):
  """(params, batch, settings) -> (loss, metrics). batch: 'inputs' and 'targets', each (N, B, H,
  W, C), and 'masks' (face, eyes, mouth) when the mask is on. Every term of `loss_terms` is
  computed and weighted by settings['term_weights'] (a member weights a term it does not use by
  0); settings['mask_on'] is True, False, or a traced bool (members that differ).

  The loss is the sum over identities of each identity's mean loss (each decoder learns only
  from its own identity; the shared encoder gets all the gradients), plus the latent terms
  (losses/latent.py), each one number for the whole batch, on the codes of the inputs."""
  unit = tuple(LossTerm(t.name, 1.0, t.params) for t in loss_terms if not is_latent(t.name))
  latent = [(k, t) for k, t in enumerate(loss_terms) if is_latent(t.name)]

  def loss_fn(params, batch, s):
    out, z = model.apply(params, batch["inputs"], method="reconstruct")
    recon, mask_pred = models.split_output(out)
    n, b = recon.shape[:2]
    flat = lambda a: a.reshape((n * b,) + a.shape[2:])
    side = recon.shape[2]
    # dfaker outputs 2x the input: its targets and masks are brought up to the output's size
    # (upsampling, where the antialiased resize is plain bilinear, as tf.image.resize).
    targets = models.to_resolution(flat(batch["targets"]), side)
    masks = models.to_resolution(flat(batch["masks"]), side) if "masks" in batch else None
    weights = None
    if s["mask_on"] is not False:
      weights = mask_weights(masks, s["eye"], s["mouth"])
      if s["mask_on"] is not True:
        weights = jnp.where(s["mask_on"], weights, jnp.ones_like(weights))
    _, parts = combined_loss(unit, flat(recon), targets, weights)
    total = sum(s["term_weights"][k] * parts[t.name] for k, t in enumerate(loss_terms)
                if not is_latent(t.name))
    if mask_pred is not None:  # the learned mask's own term, against the data's face mask
      parts["mask_mse"] = mse(flat(mask_pred), masks[..., 0:1])
      total = total + s["learned_weight"] * parts["mask_mse"]
    per_identity = total.reshape(n, b).mean(axis=1)
    loss = per_identity.sum()
    for k, t in latent:
      parts[t.name] = t.on_codes(z)
      loss = loss + s["term_weights"][k] * parts[t.name]
    metrics = {f"train/{k}": v.mean() for k, v in parts.items()}
    metrics.update({f"train/loss/{i}": per_identity[i] for i in range(n)})
    return loss, metrics

  return loss_fn
