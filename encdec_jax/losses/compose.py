"""How a run's loss is built from the config: the terms of config.loss, the face-mask weighting,
the learned mask's own term, summed over identities.

  loss_fn = make_loss_fn(model, terms)                # (params, batch, settings) -> (loss, metrics)
  settings = loss_settings(terms, cfg.mask)            # one run's numbers
The step (encdec_jax/step.py) takes its gradient; members (encdec_jax/members.py) pass settings
with a leading member axis.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from encdec_jax import models
from encdec_jax.config import ExperimentConfig, MaskConfig
from encdec_jax.losses import (ADVERSARY_LOSSES, LossTerm, combined_loss, is_adversary, is_image,
                               is_latent, is_swap, mask_weights, mse, parse_loss_spec)
from encdec_jax.losses.swap import (MEANS, REALISM, RECODES, SWAP_SHARE, SwapPair, mean_colour,
                                   realism_accuracy, skin_weights, through_encoder)


def needs_masks(cfg: ExperimentConfig) -> bool:
  """Whether a run's batches need the data's (face, eyes, mouth) masks: the mask-weighted loss,
  the learned mask's target and the swap terms (losses/swap.py) use them."""
  return (cfg.mask.enabled or cfg.model.learn_mask
          or any(is_swap(t.name) for t in parse_loss_spec(cfg.loss)))


def swap_rows(batch_size: int) -> int:
  """How many of each identity's batch the swap terms decode with every other decoder."""
  return max(1, math.ceil(SWAP_SHARE * batch_size))


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
  (losses/latent.py), each one number for the whole batch, on the codes of the inputs, plus the
  swap terms (losses/swap.py): the first `swap_rows(B)` codes of identity i decoded by every
  decoder j != i, each pair's term added (decoder j gets its gradient, the encoder too unless the
  term has encoder=0; a term in swap.RECODES also reads the swaps' codes, the encoder's weights
  frozen there; a term in swap.REALISM trains the model's realism critic on j's targets against
  the swaps, both inside the face masks of both, metric train/realism_acc), plus the adversary
  terms (losses/latent.py: the model's identity critic on the codes; metric train/critic_acc)."""
  unit = tuple(LossTerm(t.name, 1.0, t.params) for t in loss_terms if is_image(t.name))
  latent = [(k, t) for k, t in enumerate(loss_terms) if is_latent(t.name)]
  swaps = [(k, t) for k, t in enumerate(loss_terms) if is_swap(t.name)]
  adversaries = [(k, t) for k, t in enumerate(loss_terms) if is_adversary(t.name)]

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
    total = sum(s["term_weights"][k] * parts[t.key] for k, t in enumerate(loss_terms)
                if is_image(t.name))
    if mask_pred is not None:  # the learned mask's own term, against the data's face mask
      parts["mask_mse"] = mse(flat(mask_pred), masks[..., 0:1])
      total = total + s["learned_weight"] * parts["mask_mse"]
    per_identity = total.reshape(n, b).mean(axis=1)
    loss = per_identity.sum()
    for k, t in latent:
      parts[t.key] = t.on_codes(z)
      loss = loss + s["term_weights"][k] * parts[t.key]
    for k, t in adversaries:
      parts[t.key], parts["critic_acc"] = _critic_term(model, params, z, ADVERSARY_LOSSES[t.name])
      loss = loss + s["term_weights"][k] * parts[t.key]
    if swaps:
      parts.update(_swap_terms(model, params, z, batch, swaps, side))
      for k, t in swaps:
        loss = loss + s["term_weights"][k] * parts[t.key]
    metrics = {f"train/{k}": v.mean() for k, v in parts.items()}
    metrics.update({f"train/loss/{i}": per_identity[i] for i in range(n)})
    return loss, metrics

  return loss_fn


def _critic_term(model, params, z, term):
  """An adversary term on the codes z (N, B, ...): the critic reads them with their gradient
  stopped (it learns), and with its own weights frozen (the encoder learns)."""
  n, b = z.shape[:2]
  flat = z.reshape((n * b,) + z.shape[2:])
  labels = jnp.repeat(jnp.arange(n), b)
  critic = model.apply(params, jax.lax.stop_gradient(flat), method="critic_logits")
  frozen = model.apply(jax.lax.stop_gradient(params), flat, method="critic_logits")
  return term(critic, frozen, labels)


def _swap_terms(model, params, z, batch, swaps, side) -> dict:
  """{term key: the term summed over ordered pairs (i, j != i)} on the swaps of the first
  swap_rows(B) codes of each identity (make_loss_fn)."""
  n, b = z.shape[:2]
  k = swap_rows(b)
  masks = batch["masks"][..., 0:1]
  resize = lambda a: models.to_resolution(a, side)
  # j's mean face colour: its own targets inside their masks, the whole batch (no gradient).
  own = [jax.lax.stop_gradient(mean_colour(resize(batch["targets"][j]), resize(masks[j])))
         for j in range(n)]
  # swap_tone(common=1) only: per pair, the pixels where both identities' mean face masks are > 0.5.
  common = any(dict(t.params).get("common") for _, t in swaps)
  skin = any(dict(t.params).get("skin") for _, t in swaps)
  if skin:  # swap_tone(skin=1): j's mean colour on its skin, the eye and mouth regions out
    own_skin = [jax.lax.stop_gradient(mean_colour(
        resize(batch["targets"][j]), skin_weights(resize(masks[j]), resize(batch["masks"][j, ..., 1:3]))))
        for j in range(n)]
  means = any(t.name in MEANS for _, t in swaps)
  realism = any(t.name in REALISM for _, t in swaps)
  if common or means:  # each identity's batch-mean face mask (no gradient)
    mean_mask = [jax.lax.stop_gradient(resize(masks[j]).astype(jnp.float32).mean(0)) for j in range(n)]
  if common:
    region = lambda i, j: ((mean_mask[i] > 0.5) & (mean_mask[j] > 0.5)).astype(jnp.float32)
    own_region = lambda i, j: jax.lax.stop_gradient(
        mean_colour(resize(batch["targets"][j]), resize(masks[j]) * region(i, j)))
  if means:  # swap_mean: each identity's mean image and per-pixel variance (no gradient)
    own_images = [jax.lax.stop_gradient(resize(batch["targets"][j])[..., :3].astype(jnp.float32))
                  for j in range(n)]
    mean_image = [x.mean(0) for x in own_images]
    var_image = [x.var(0).mean(-1, keepdims=True) for x in own_images]
    both = lambda i, j: mean_mask[i] * mean_mask[j]
    spread = lambda i, j: (both(i, j) * var_image[j]).sum() / (both(i, j).sum() + 1e-6)
  recode = any(t.name in RECODES for _, t in swaps)
  if recode:  # the codes' statistics for swap_cycle, and the encoder with its weights frozen
    zs = jax.lax.stop_gradient(z.astype(jnp.float32))
    mean_code = zs.mean(axis=1)                      # (N, ...): each identity's mean code
    code_var = zs.reshape((n * b,) + zs.shape[2:]).var(axis=0).mean()
    frozen = jax.lax.stop_gradient(params)
    in_side = batch["inputs"].shape[-2]
  if realism:  # row r of real (j's) and fake (i's swapped) read inside both rows' face masks
    critic = lambda p, images, i, j: model.apply(  # noqa: E731
        p, images[..., :3] * resize(masks[i, :k] * masks[j, :k]).astype(jnp.float32), j,
        method="realism_logits")
    frozen_critic = jax.lax.stop_gradient(params)
    accuracy = []
  out = {t.key: 0.0 for _, t in swaps}
  # Terms with encoder=1 see swaps of codes with gradient; encoder=0 without it
  # (one more decode when a group has both kinds).
  through = sorted({through_encoder(t.params) for _, t in swaps})
  swaps_of = lambda enc: [t for _, t in swaps if through_encoder(t.params) == enc]  # noqa: E731
  for i in range(n):
    for j in range(n):
      if i == j:
        continue
      for enc in through:
        codes = z[i, :k] if enc else jax.lax.stop_gradient(z[i, :k])
        swapped = model.apply(params, codes, j, method=_decode_as)
        pair = SwapPair(swapped, resize(masks[i, :k]), own[j],
                        sources=jax.lax.stop_gradient(resize(batch["targets"][i, :k])),
                        feature_masks=resize(batch["masks"][i, :k, ..., 1:3]))
        if common:
          pair = pair._replace(region=region(i, j), target_colour_region=own_region(i, j))
        if skin:
          pair = pair._replace(target_colour_skin=own_skin[j])
        if any(t.name in MEANS for t in swaps_of(enc)):
          pair = pair._replace(target_mean=mean_image[j], target_var=spread(i, j),
                               both=both(i, j), source_mean=own_images[i][k if b > k else 0:].mean(0))
        terms = swaps_of(enc)
        if any(t.name in RECODES for t in terms):
          rgb = models.to_resolution(models.split_output(swapped)[0], in_side)
          pair = pair._replace(recoded=model.apply(frozen, rgb, method="encode"),
                               code_target=zs[i, :k] - mean_code[i] + mean_code[j], code_var=code_var)
        if any(t.name in REALISM for t in terms):
          rgb = models.split_output(swapped)[0]
          real = jax.lax.stop_gradient(resize(batch["targets"][j, :k]))
          pair = pair._replace(realism=(critic(params, real, i, j),
                                        critic(params, jax.lax.stop_gradient(rgb), i, j),
                                        critic(frozen_critic, rgb, i, j)))
          accuracy.append(realism_accuracy(pair))
        for t in terms:
          out[t.key] = out[t.key] + t.on_swaps(pair)
  if realism:
    out["realism_acc"] = sum(accuracy) / len(accuracy)
  return out


def _decode_as(module, codes, identity: int):
  return module.decode(module.code(codes, identity), identity)
