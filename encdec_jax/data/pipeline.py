"""Training batches as a pure function of (seed, step), plus a prefetching iterator.

`TrainSource.batch(step)` returns, for every identity, B images drawn without replacement within
an epoch (a permutation per (seed, identity, epoch)), augmented with an rng seeded by
(seed, step): the Deepfakes random warp (annealed to none by step `warp_anneal`, where set) and
`input_jitter` on the inputs only, and flip and colour jitter on inputs and targets alike. A run
that restarts at step k therefore sees exactly the batches it would have seen. Pure numpy: no
TensorFlow at training time.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Iterator

import numpy as np

from encdec_jax.config import DataConfig
from encdec_jax.pixels import remap_bilinear, to_unit_float


@dataclasses.dataclass(frozen=True)
class Augment:
  warp: bool = True
  warp_scale: float = 0.03
  flip: bool = True
  color_jitter: float = 0.05
  input_jitter: float = 0.0
  warp_anneal: int = 0  # the step by which the warp's noise has fallen linearly to none (0: never)

  @classmethod
  def from_config(cls, c: DataConfig) -> "Augment":
    return cls(c.warp, c.warp_scale, c.flip, c.color_jitter, c.input_jitter, c.warp_anneal)

  def warp_factor(self, step: int) -> float:
    """What the drawn warp noise is multiplied by at `step`: 1 - step / warp_anneal, down to 0."""
    return 1.0 if self.warp_anneal <= 0 else max(0.0, 1.0 - step / self.warp_anneal)


def _bilinear_resize_grid(g_Bx5x5, size: int, xp=np):
  """Bilinear upsampling of coarse control grids to size x size (align-corners). `xp`: numpy, or
  jax.numpy for the device path (data/device_augment.py)."""
  n = g_Bx5x5.shape[-1]
  t = np.linspace(0, n - 1, size)
  i0 = np.clip(np.floor(t).astype(int), 0, n - 2)
  w = (t - i0)[None, :]
  rows = g_Bx5x5[:, i0, :] * (1 - w)[..., None] + g_Bx5x5[:, i0 + 1, :] * w[..., None]
  return rows[:, :, i0] * (1 - w)[:, None, :] + rows[:, :, i0 + 1] * w[:, None, :]


def draw_warp(rng: np.random.Generator, b: int, scale: float):
  """Control-point noise (ny, nx), each (b, 5, 5), border pinned."""
  ny = rng.normal(0, scale, (b, 5, 5))
  nx = rng.normal(0, scale, (b, 5, 5))
  ny[:, [0, -1], :] = 0  # pin the border so no edge pixel is sampled from outside
  nx[:, :, [0, -1]] = 0
  return ny, nx


def apply_warp(img_BxHxWxC, ny, nx, xp=np):
  b, h, w, _ = img_BxHxWxC.shape
  base = np.linspace(0, 1, 5)
  gy, gx = np.meshgrid(base, base, indexing="ij")
  map_y = _bilinear_resize_grid(gy[None] + ny, h, xp) * (h - 1)
  map_x = _bilinear_resize_grid(gx[None] + nx, w, xp) * (w - 1)
  return remap_bilinear(img_BxHxWxC, map_y, map_x, xp)


def random_warp(img_BxHxWxC: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
  """The Deepfakes random warp: a 5x5 grid of control points over the image, each moved by
  gaussian noise (std `scale` x image size), interpolated to every pixel, image remapped."""
  return apply_warp(img_BxHxWxC, *draw_warp(rng, img_BxHxWxC.shape[0], scale))


def draw_augment(rng: np.random.Generator, b: int, a: Augment) -> dict[str, np.ndarray]:
  """The random parameters of one identity's batch of `b` examples, drawn in one fixed order
  (flip, colour gain and bias, warp noise, the inputs' own gain and bias); a disabled
  augmentation draws nothing and gets a neutral value. The same draws serve the numpy and the
  device (data/device_augment.py) paths."""
  flip = rng.random(b) < 0.5 if a.flip else np.zeros(b, bool)
  if a.color_jitter > 0:
    gain = 1 + rng.uniform(-a.color_jitter, a.color_jitter, (b, 1, 1, 3)).astype(np.float32)
    bias = rng.uniform(-a.color_jitter, a.color_jitter, (b, 1, 1, 1)).astype(np.float32)
  else:
    gain, bias = np.ones((b, 1, 1, 3), np.float32), np.zeros((b, 1, 1, 1), np.float32)
  warp_y, warp_x = draw_warp(rng, b, a.warp_scale) if a.warp else (np.zeros((b, 5, 5)),) * 2
  s = a.input_jitter
  if s > 0:  # drawn last: the draws above are the same with it on or off
    in_gain = 1 + rng.uniform(-s, s, (b, 1, 1, 3)).astype(np.float32)
    in_bias = rng.uniform(-s / 2, s / 2, (b, 1, 1, 3)).astype(np.float32)
  else:
    in_gain, in_bias = np.ones((b, 1, 1, 3), np.float32), np.zeros((b, 1, 1, 3), np.float32)
  return {"flip": flip, "gain": gain, "bias": bias, "warp_y": warp_y, "warp_x": warp_x,
          "in_gain": in_gain, "in_bias": in_bias}


def apply_augment(images_u8, masks_u8, p: dict, a: Augment):
  """-> inputs, targets, masks as float32 in [0, 1]; `p` for exactly these rows."""
  x, m = to_unit_float(images_u8), to_unit_float(masks_u8)
  if a.flip:
    f = p["flip"]
    x[f] = x[f, :, ::-1]
    m[f] = m[f, :, ::-1]
  if a.color_jitter > 0:
    x = np.clip(x * p["gain"] + p["bias"], 0, 1)
  inputs = apply_warp(x, p["warp_y"], p["warp_x"]).astype(np.float32) if a.warp else x
  if a.input_jitter > 0:  # the encoder's input only: the target keeps the identity's colours
    inputs = np.clip(inputs * p["in_gain"] + p["in_bias"], 0, 1)
  return inputs, x, m


class TrainSource:
  """Random access to training batches: batch(step) depends only on (seed, step)."""

  def __init__(self, images_u8, masks_u8, identity, num_identities: int, batch_size: int,
               seed: int, aug: Augment, rows: tuple[int, int] | None = None):
    """`rows` = (start, stop): the rows of each identity's global batch this host produces
    (its share under data parallelism across hosts); default all."""
    self.images = [images_u8[identity == i] for i in range(num_identities)]
    self.masks = [masks_u8[identity == i] for i in range(num_identities)]
    for i, im in enumerate(self.images):
      if len(im) < batch_size:
        raise ValueError(f"identity {i} has {len(im)} training images, fewer than batch_size={batch_size}")
    self.batch_size, self.seed, self.aug = batch_size, seed, aug
    self.rows = slice(*(rows or (0, batch_size)))

  def indices(self, identity: int, step: int) -> np.ndarray:
    n, b = len(self.images[identity]), self.batch_size
    pos = step * b + np.arange(b)
    out = np.empty(b, dtype=np.int64)
    for epoch in np.unique(pos // n):
      perm = np.random.default_rng([self.seed, 15485863, identity, int(epoch)]).permutation(n)
      sel = pos // n == epoch
      out[sel] = perm[pos[sel] % n]
    return out

  def raw_batch(self, step: int) -> dict[str, np.ndarray]:
    """What `batch(step)` is made from, before any float work: 'images' and 'masks' uint8
    (N, rows, H, W, C) and the parameters (N, rows, ...) of `draw_augment`, drawn for the whole
    global batch in one fixed order and sliced to this host's rows (so every host count gives
    the same examples); data/device_augment.py finishes them on the accelerator."""
    parts = []
    for i in range(len(self.images)):
      rng = np.random.default_rng([self.seed, 32452843, i, step])
      idx = self.indices(i, step)[self.rows]
      p = {k: v[self.rows] for k, v in draw_augment(rng, self.batch_size, self.aug).items()}
      f = self.aug.warp_factor(step)  # the draws stay the same: only the warp's size anneals
      p["warp_y"], p["warp_x"] = p["warp_y"] * f, p["warp_x"] * f
      parts.append(dict(p, images=self.images[i][idx], masks=self.masks[i][idx]))
    return {k: np.stack([p[k] for p in parts]) for k in parts[0]}

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """{'inputs', 'targets', 'masks'}: each (N, rows, H, W, C) float32 (rows = B by default),
    `raw_batch(step)` augmented in numpy."""
    raw = self.raw_batch(step)
    parts = [apply_augment(raw["images"][i], raw["masks"][i], {k: v[i] for k, v in raw.items()},
                           self.aug) for i in range(len(self.images))]
    return {k: np.stack([p[j] for p in parts]) for j, k in enumerate(("inputs", "targets", "masks"))}

  def iterate(self, start: int, prefetch: int = 2, raw: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Batches (raw_batch if `raw`) for steps start, start+1, ..., prepared `prefetch` ahead on
    a worker thread."""
    make = self.raw_batch if raw else self.batch
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batches") as pool:
      pending = [pool.submit(make, start + k) for k in range(prefetch)]
      step = start + prefetch
      while True:
        yield pending.pop(0).result()
        pending.append(pool.submit(make, step))
        step += 1
