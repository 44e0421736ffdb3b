"""Losses on the swap path: terms that decode identity i's codes with decoder j (i != j), the
model's swap, during training. Label-free: they use which identity an image is and the data's face
masks (the mask-weighted loss's own), never a pose, expression or judge.

Every entry maps one ordered pair's SwapPair (below) -> a scalar, in float32. They are terms of
config.loss like the image losses (encdec_jax/losses/__init__.py), e.g. "ssim,mae,swap_tone";
encdec_jax/losses/compose.py decodes a share of each identity's batch with every other decoder and
sums the term over pairs.

Every entry has the parameter `encoder`: 0 (the default) trains the decoding side only (decoder
j, and the code step of architectures that have one: i's codes are decoded without gradient); 1
lets the term's gradient reach the shared encoder through i's codes too, e.g.
"swap_tone(encoder=1)". Why these defaults: BENCHMARKS.md, "Recipe".

swap_tone: the gap between the mean colour of j's swaps inside the source's face mask (where a
  converted swap shows them) and j's own mean face colour (its training targets, inside their
  masks, in the same batch; no gradient), L1 over channels. A decoder only ever meets its own
  identity's codes, and the skin's brightness changes with the light from image to image, so the
  code carries brightness and a decoder can paint another identity's codes in that identity's
  tone. The term is one number per pair and batch, not per image: a swap may still be darker or
  lighter than j's average with its frame's light, only not on average.

  common=1 compares both colours only inside the pair's common region: the pixels where both
  identities' faces are visible in most of the batch (each identity's mean face mask > 0.5), so
  parts of the face that one identity's frames hide (a fringe over the forehead) do not enter.

  skin=1 compares both colours on the skin only: each image's face mask with its eye and mouth
  regions taken out (coverage face x (1 - eyes) x (1 - mouth), the data's masks), the swaps' in
  i's masks, j's own in j's. An open mouth or an open eye changes a face's mean colour (a pale
  face darkens where its mouth opens) while j's mean is over j's faces of every expression, so the
  plain term asks a swap of an open mouth to be lighter than j's face is: it pulls against the
  source's expression. On the skin the expression does not enter. Not with common=1. Its
  measurements: BENCHMARKS.md, "Recipe" (its `swap_tone(skin=1)` row).

swap_cycle: the encoder's code of j's swap should differ from j's mean code as i's code differs
  from i's: |E(D_j(z)) - (z - mean code of i + mean code of j)|^2, relative to the codes' variance
  (1 = one standard deviation per unit). The means are over each identity's codes in the batch,
  and the target, the means and the variance carry no gradient; nor do the encoder's weights in
  the second pass (E), so the encoder cannot meet the term by reading less from images: decoder j
  must draw what the encoder reads as i's pose and expression (a latent cycle consistency, with
  the identity's mean code, which a linear probe reads the identity from, moved to j's).

swap_structure: 1 - the correlation between the luminance of j's swap and of i's source image
  (its training target: the face the code was read from, unwarped), inside each of the source's
  feature regions (the data's mouth mask, and with eyes=1 its eye mask), weighted by the
  region's coverage; the mean over regions and images. A decoder only ever meets its own
  identity's codes, so nothing in its training says what another identity's open mouth looks
  like in its face; swap_tone supervises the swap's colour, this its structure where the
  expression is drawn. A correlation ignores gain and offset, so j's own tone and contrast are
  free; only where the source is darker or lighter inside its mouth is asked for. Label-free:
  the source's pixels and the masks the mask-weighted loss uses. The true face swaps themselves
  score 0.46-0.70 on it (identities' mouths differ): it cannot reach 0 without copying.

  chroma=c (0 to 1, default 0) asks for the same of red minus green with weight c and of the
  luminance with 1 - c. How much an open mouth darkens a face depends on the skin (a pale face
  darkens, a dark one hardly: the true swaps' luminance in the mouth correlates 0.61 with a
  family-1 source's), while the lips and the mouth's inside are redder than any skin and the
  teeth less red (red minus green: 0.85). The recipe's swaps had it the other way round: 0.81-0.88
  on the luminance, 0.42 on red minus green (BENCHMARKS.md, "Recipe": swap_structure with red
  minus green).

  eyes=0 (the default) takes the mouth region only; eyes=1 the eye region too. An open mouth is
  dark inside on any skin, but an open eye's whites are lighter than dark skin and about as light
  as pale skin: asked to copy a dark face's eye pattern, decoders drew family 1's pale identity
  with closed eyes (BENCHMARKS.md, "Recipe": swap_structure with the eyes).

swap_mean: the gap between the mean image of j's swaps and the mean image of j's own training
  targets in the batch (no gradient), per pixel over the region both identities' faces cover
  (the product of their batch-mean face masks), squared and relative to j's targets' variance
  across the batch (1 = one standard deviation everywhere). The crops are aligned, so a mean image
  is a face whose expression and pose are the batch's average. A decoder that paints i's codes
  with a smile or a head tilt of its own (a per-direction offset: the judges read swaps into one
  identity as smiling more than their sources and into the other as smiling less) moves the
  swaps' mean away from j's. Label-free: it assumes only that the identities' frames share one
  distribution of expression and pose, as the synthetic data's do (real footage of two people
  need not; say so when you use it there).

  The squared gap of means is estimated from two halves of the swaps, (mean of half A - j's mean)
  x (mean of half B - j's mean): the halves are independent draws, so its expectation is the
  squared gap of the expected means, and unlike the square of one batch mean it does not grow with
  the swaps' own spread (which would pull every swap toward one average face). A single swap
  (swap_rows 1) falls back to its square.

  paired=1 estimates the same gap from each swap minus its own source (i's training target),
  against j's mean image minus the mean of i's images that were not swapped (independent of the
  swaps): the expected value is unchanged, and where a swap follows its source closely the
  expressions' spread cancels. Where it does not, the difference carries both images' spread and
  is noisier than the plain form.

  Its measurements: BENCHMARKS.md, "Recipe" (its swap_mean row); the term is kept so that the row
  can be rerun.

swap_realism: a realism critic (models.RealismCritic, config.model.realism_width > 0; DeepFaceLab's
  GAN power, here on the swaps) learns to tell j's own training targets (real) from j's swaps
  (fake), patch by patch, while decoder j learns to make its swaps pass: the critic's logistic loss
  on both with the images' gradient stopped (only the critic learns from it), plus the
  non-saturating generator loss on the swaps through the critic with its weights frozen (only the
  decoding side learns from it, and the encoder with encoder=1):

      softplus(-D(sg(real))) + softplus(D(sg(swap))) + softplus(-D_sg(swap)),   patch means

  About 2 log 2 + log 2 at the balance, where the critic cannot tell. Why: every swap term that asks
  more of a swap than the reconstructions teach (swap_structure from scratch, a per-image mouth
  depth) was met with speckle and streaks, which no image of j has; the critic names them as
  fake without any label. Real and fake come in rows: j's first swap_rows(B) targets and the swaps
  of i's, row r of both read inside the product of j's and i's row-r face masks, zero outside:
  only face pixels, as a convert pastes them, and the same masks for both classes, so the masks'
  outlines tell the critic nothing, and hair, ears and background, which a convert keeps from
  the frame, are not asked of decoder j. Metric train/realism_acc: the share of its patch
  answers that are right (0.5: it cannot tell). Its measurements: BENCHMARKS.md, "Recipe".
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


ENCODER = 0  # the default of every swap term's `encoder` parameter (module docstring)


def through_encoder(params) -> bool:
  """Whether a swap term with these parameters ((name, value), ...) trains the encoder too."""
  return bool(dict(params).get("encoder", ENCODER))


class SwapPair(NamedTuple):
  """What a swap term sees of one ordered pair (i, j != i), made by compose.make_loss_fn."""
  swaps: jax.Array               # (k, H, W, C): decoder j's outputs from i's first k codes
  source_masks: jax.Array        # (k, H, W, 1): i's face masks of those images
  target_colour: jax.Array       # (C,): j's mean face colour in the batch (no gradient)
  recoded: jax.Array = None      # (k, ...): the encoder's codes of the swaps (its weights frozen);
                                 # only for terms in RECODES
  code_target: jax.Array = None  # (k, ...): i's codes - i's mean code + j's (no gradient)
  code_var: jax.Array = None     # (): the codes' mean variance per unit over the batch (no gradient)
  region: jax.Array = None       # (H, W, 1): 1 where both i's and j's batch-mean face masks are > 0.5
  target_colour_region: jax.Array = None  # (C,): j's mean face colour inside region (no gradient)
  target_colour_skin: jax.Array = None  # (C,): j's mean colour on its skin (skin_weights; no gradient)
  sources: jax.Array = None      # (k, H, W, C): i's training targets of those images (no gradient)
  feature_masks: jax.Array = None  # (k, H, W, 2): i's eye and mouth regions of those images
  target_mean: jax.Array = None  # (H, W, C): j's targets' mean image in the batch (no gradient);
                                 # only for terms in MEANS
  target_var: jax.Array = None   # (): j's targets' variance across the batch, mean over `both`
  both: jax.Array = None         # (H, W, 1): the product of i's and j's batch-mean face masks
  source_mean: jax.Array = None  # (H, W, C): i's targets' mean image over the rows not swapped
  realism: tuple = None          # the realism critic's patch logits (real, fake, fooled): on j's
                                 # first k targets and on the swaps, images without gradient, and
                                 # on the swaps through the frozen critic; only for terms in REALISM


def mean_colour(images_BxHxWxC, mask_BxHxWx1):
  """The mask-weighted mean colour over a batch: (C,)."""
  x = jnp.asarray(images_BxHxWxC, jnp.float32)[..., :3]
  m = jnp.asarray(mask_BxHxWx1, jnp.float32)
  return (x * m).sum((0, 1, 2)) / (m.sum() + 1e-6)


def skin_weights(face_masks, feature_masks):
  """(..., H, W, 1) face coverage and (..., H, W, 2) eye and mouth coverage -> the skin's
  coverage: the face without its eye and mouth regions."""
  f = jnp.asarray(feature_masks, jnp.float32)
  return jnp.asarray(face_masks, jnp.float32) * (1.0 - f[..., 0:1]) * (1.0 - f[..., 1:2])


def swap_tone(p: SwapPair, *, encoder: int = ENCODER, common: int = 0, skin: int = 0):
  """|mean colour of the swaps inside the source's face mask - the target identity's|, averaged
  over channels; common=1: both inside the pair's common region only; skin=1: both on the skin,
  the eye and mouth regions taken out (module docstring)."""
  del encoder  # read by compose: whether the term's gradient reaches the encoder (module docstring)
  if skin:
    swap, target = mean_colour(p.swaps, skin_weights(p.source_masks, p.feature_masks)), p.target_colour_skin
  elif common:
    swap, target = mean_colour(p.swaps, p.source_masks * p.region), p.target_colour_region
  else:
    swap, target = mean_colour(p.swaps, p.source_masks), p.target_colour
  return jnp.abs(swap - jnp.asarray(target, jnp.float32)).mean()


def swap_cycle(p: SwapPair, *, encoder: int = ENCODER):
  """Mean squared gap between the swaps' codes and i's codes moved to j's mean, over the codes'
  mean variance (module docstring)."""
  del encoder
  d = jnp.asarray(p.recoded, jnp.float32) - jnp.asarray(p.code_target, jnp.float32)
  return jnp.mean(d * d) / (p.code_var + 1e-8)


# ITU-R BT.601 luma weights: the swap's and the source's brightness, whatever their colour.
LUMA = (0.299, 0.587, 0.114)


def weighted_correlation(a_BxHxW, b_BxHxW, w_BxHxW, eps: float = 1e-10):
  """(B,): the correlation of a and b over each image's pixels, weighted by w (>= 0)."""
  total = w_BxHxW.sum((1, 2)) + eps
  mean = lambda v: (w_BxHxW * v).sum((1, 2)) / total  # noqa: E731
  da = a_BxHxW - mean(a_BxHxW)[:, None, None]
  db = b_BxHxW - mean(b_BxHxW)[:, None, None]
  cov = mean(da * db)
  return cov / jnp.sqrt(mean(da * da) * mean(db * db) + eps)


# Red minus green: the lips' and the mouth's redness against the skin's, whatever its brightness.
CHROMA = (1.0, -1.0, 0.0)


def swap_structure(p: SwapPair, *, encoder: int = ENCODER, eyes: int = 0, chroma: float = 0.0):
  """1 - the mask-weighted correlation of the swaps' and the sources' luminance in the mouth
  region (and the eye region with eyes=1), averaged over regions and images (module docstring).
  chroma=c in [0, 1] weighs in the correlation of red minus green by c (luminance's by 1 - c).
  p.feature_masks: (k, H, W, 2), the eye and the mouth region."""
  del encoder
  swaps = jnp.asarray(p.swaps[..., :3], jnp.float32)
  sources = jnp.asarray(p.sources[..., :3], jnp.float32)
  w = jnp.asarray(p.feature_masks, jnp.float32)
  if w.shape[-1] != 2:
    raise ValueError("swap_structure needs the data's eye and mouth masks (3 mask channels: face, "
                     f"eyes, mouth); this data has {w.shape[-1] + 1}")
  regions = (0, 1) if eyes else (1,)
  total = 0.0
  for channel, share in ((LUMA, 1.0 - chroma), (CHROMA, chroma)):
    if share:  # a Python number: a channel at weight 0 is not computed
      c = jnp.asarray(channel, jnp.float32)
      corr = jnp.stack([weighted_correlation(swaps @ c, sources @ c, w[..., r]) for r in regions])
      total = total + share * (1.0 - jnp.mean(corr))
  return total


def swap_mean(p: SwapPair, *, encoder: int = ENCODER, paired: int = 0):
  """(mean of j's swaps - mean of j's targets)^2 per pixel and channel, weighted by p.both and
  over j's targets' variance, from two independent halves of the swaps (module docstring).
  paired=1: each swap minus its own source, against j's mean minus i's other images' mean."""
  del encoder
  d = jnp.asarray(p.swaps[..., :3], jnp.float32) - jnp.asarray(p.target_mean, jnp.float32)[..., :3]
  if paired:
    d = d - jnp.asarray(p.sources[..., :3], jnp.float32) + jnp.asarray(p.source_mean, jnp.float32)[..., :3]
  h = d.shape[0] // 2
  sq = d[:h].mean(0) * d[h:].mean(0) if h else d[0] * d[0]
  w = jnp.asarray(p.both, jnp.float32)
  return (w * sq).mean(-1, keepdims=True).sum() / (w.sum() + 1e-6) / (p.target_var + 1e-8)


def swap_realism(p: SwapPair, *, encoder: int = ENCODER):
  """The realism critic's logistic loss on j's targets (real) and swaps (fake), plus the swaps'
  non-saturating loss through the frozen critic (module docstring)."""
  del encoder
  real, fake, fooled = (jnp.asarray(a, jnp.float32) for a in p.realism)
  return (jax.nn.softplus(-real).mean() + jax.nn.softplus(fake).mean()
          + jax.nn.softplus(-fooled).mean())


def realism_accuracy(p: SwapPair):
  """The share of the critic's patch answers that are right, real and fake weighed equally."""
  real, fake, _ = p.realism
  return 0.5 * ((real > 0).mean() + (fake < 0).mean())


SWAP_LOSSES: dict[str, Callable] = {"swap_tone": swap_tone, "swap_cycle": swap_cycle,
                                    "swap_structure": swap_structure, "swap_mean": swap_mean,
                                    "swap_realism": swap_realism}
# Terms that read SwapPair.recoded (a second encoder pass over the swaps).
RECODES = frozenset({"swap_cycle"})
# Terms that read SwapPair.target_mean, target_var, both and source_mean (the mean images).
MEANS = frozenset({"swap_mean"})
# Terms that read SwapPair.realism (the model's realism critic).
REALISM = frozenset({"swap_realism"})
# Share of each identity's batch decoded by every other decoder for the swap terms (at least one
# image): a quarter keeps the extra decoder passes small.
SWAP_SHARE = 0.25
