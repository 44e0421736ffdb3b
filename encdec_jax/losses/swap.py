"""Losses on the swap path: terms that decode identity i's codes with decoder j (i != j), the
model's swap, during training. Label-free: they use which identity an image is and the data's face
masks (the mask-weighted loss's own), never a pose, expression or judge.

Every entry maps (swaps (B, H, W, C) decoded by j from i's codes, i's face masks (B, H, W, 1),
j's mean face colour (C,)) -> a scalar, in float32. They are terms of config.loss like the image
losses (encdec_jax/losses/__init__.py), e.g. "ssim,mae,swap_tone"; encdec_jax/losses/compose.py
decodes a share of each identity's batch with every other decoder and sums the term over pairs.

swap_tone: the gap between the mean colour of j's swaps inside the source's face mask (where a
  converted swap shows them) and j's own mean face colour (its training targets, inside their
  masks, in the same batch; no gradient), L1 over channels. Why (BENCHMARKS.md "Recipe, round 4"):
  a decoder only ever meets its own identity's codes, and the skin's brightness changes with the
  light from image to image, so the code carries brightness; decoder 0 of family 0 read identity 1's
  lighter skin as brighter light and painted its swaps in identity 1's tone, read as the source
  every time. The term is one number per pair and batch, not per image: a swap may still be
  darker or lighter than j's average with its frame's light, only not on average.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp


def mean_colour(images_BxHxWxC, mask_BxHxWx1):
  """The mask-weighted mean colour over a batch: (C,)."""
  x = jnp.asarray(images_BxHxWxC, jnp.float32)[..., :3]
  m = jnp.asarray(mask_BxHxWx1, jnp.float32)
  return (x * m).sum((0, 1, 2)) / (m.sum() + 1e-6)


def swap_tone(swaps_BxHxWxC, source_mask_BxHxWx1, target_colour_C):
  """|mean colour of the swaps inside the source's face mask - the target identity's|, averaged
  over channels (module docstring)."""
  return jnp.abs(mean_colour(swaps_BxHxWxC, source_mask_BxHxWx1)
                 - jnp.asarray(target_colour_C, jnp.float32)).mean()


SWAP_LOSSES: dict[str, Callable] = {"swap_tone": swap_tone}
# Share of each identity's batch decoded by every other decoder for the swap terms (at least one
# image): a quarter keeps the extra decoder passes small (BENCHMARKS.md "Recipe, round 4").
SWAP_SHARE = 0.25
