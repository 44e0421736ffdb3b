"""Synthetic "photos": synthetic faces pasted at known positions, sizes and rolls into larger
images, with the true landmarks of every face in photo pixels.

They stand in for a user's photos wherever the photo path (experiments.extract, experiments.swap
on photos) is tested or measured, so nothing needs a real person's picture. A face is rendered
(encdec_jax/data/render.py) at the size it has in the photo, with its roll as the render's own
roll factor, and pasted as a square tile over a smooth random background.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from encdec_jax.data import render


@dataclasses.dataclass(frozen=True)
class Placement:
  identity: int
  x: int          # top-left corner of the face's tile in the photo
  y: int
  size: int       # the tile's side in pixels (the face spans about half of it)
  roll: float     # radians: the render's roll factor (the data trains on [-0.25, 0.25])


@dataclasses.dataclass(frozen=True)
class Photo:
  image: np.ndarray      # (H, W, 3) uint8
  landmarks: np.ndarray  # (faces, 4, 2) (x, y) photo pixels, pixel centres at integers
  placements: tuple


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """(h, w, 3) float: a smooth two-colour gradient with a little noise."""
  c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
  angle = rng.uniform(0, 2 * np.pi)
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  t = np.clip(0.5 + (np.cos(angle) * xx + np.sin(angle) * yy - 0.5), 0, 1)[..., None]
  return np.clip(c0 * (1 - t) + c1 * t + rng.normal(0, 0.02, (h, w, 3)), 0, 1)


def compose(placements, h: int, w: int, seed: int = 0, family: int = 0) -> Photo:
  """A photo of h x w with one face per placement (identities of the synthetic family `family`);
  pose and expression random from `seed`, roll as placed."""
  rng = np.random.default_rng([seed, 4243])
  img = background(rng, h, w)
  lms = []
  for p in placements:
    if not (0 <= p.x and p.x + p.size <= w and 0 <= p.y and p.y + p.size <= h):
      raise ValueError(f"{p} does not fit in a {w}x{h} photo")
    f = render.sample_factors(rng)
    f[render.FACTOR_NAMES.index("roll")] = p.roll
    r = render.render(render.identity_traits(family, p.identity), f, p.size)
    img[p.y:p.y + p.size, p.x:p.x + p.size] = r.image
    lms.append(r.landmarks * p.size - 0.5 + [p.x, p.y])
  u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
  return Photo(u8, np.array(lms, np.float64).reshape(-1, 4, 2), tuple(placements))


def random_photo(seed: int, identity: int, h: int = 160, w: int = 208, sizes=(96, 128),
                 max_roll: float = 0.3, family: int = 0) -> Photo:
  """One face of `identity` at a random place, size in [sizes] and roll in [-max_roll, max_roll]."""
  rng = np.random.default_rng([seed, identity, 77])
  s = int(rng.integers(sizes[0], sizes[1] + 1))
  p = Placement(identity, int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1)), s,
                float(rng.uniform(-max_roll, max_roll)))
  return compose([p], h, w, seed=seed * 1000 + identity, family=family)
