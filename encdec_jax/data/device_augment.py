"""The training augmentation (flip, colour jitter, Deepfakes random warp) as a jitted JAX function.

The numpy pipeline (encdec_jax/data/pipeline.py) does the float work on one host thread: fast
enough for a CPU step, not for a GPU's (BENCHMARKS.md, "Input pipeline"). With `data.augment_on="device"` the host only gathers the uint8
images and draws the random parameters (the same draws, in the same order, as the numpy path:
`pipeline.draw_augment`), and this function does the arithmetic on the accelerator, sharded like
the batch. It is `pipeline.apply_augment` with jax.numpy for numpy (the warp is the same code,
`pipeline.apply_warp(..., xp=jnp)`), in float32 where numpy samples in float64: the batches agree
to 2e-5 (tested).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax.data.pipeline import Augment, apply_warp
from encdec_jax.pixels import to_unit_float

# config.data.augment_on: where the augmentation's arithmetic runs (see `on_device`).
AUGMENT_ON = ("auto", "host", "device")


def on_device(mode: str, devices) -> bool:
  """data.augment_on: "host" (numpy, on the input thread), "device" (this module, jitted, sharded
  like the batch) or "auto" = device on accelerators, host on CPU (where the host thread runs
  beside the step for free)."""
  if mode not in AUGMENT_ON:
    raise ValueError(f"augment_on={mode!r}; valid: {list(AUGMENT_ON)}")
  if mode == "auto":
    return np.asarray(devices).flat[0].platform != "cpu"
  return mode == "device"


def augment(raw: dict, a: Augment) -> tuple[jax.Array, jax.Array, jax.Array]:
  """raw: 'images', 'masks' uint8 (B, H, W, C) and the drawn parameters of `pipeline.draw_augment`
  for those rows. -> (inputs, targets, masks), float32 in [0, 1]."""
  x, m = to_unit_float(raw["images"], jnp), to_unit_float(raw["masks"], jnp)
  if a.flip:
    f = raw["flip"][:, None, None, None]
    x = jnp.where(f, x[:, :, ::-1], x)
    m = jnp.where(f, m[:, :, ::-1], m)
  if a.color_jitter > 0:
    x = jnp.clip(x * raw["gain"] + raw["bias"], 0, 1)
  inputs = apply_warp(x, raw["warp_y"], raw["warp_x"], jnp) if a.warp else x
  if "in_gain" in raw:  # neutral (1, 0) where input_jitter is off: members may differ in it
    inputs = jnp.clip(inputs * raw["in_gain"] + raw["in_bias"], 0, 1)
  return inputs, x, m


def augment_batch(raw: dict, a: Augment) -> dict:
  """The (N identities, B, ...) layout of TrainSource.raw_batch -> {'inputs', 'targets', 'masks'}."""
  n = raw["images"].shape[0]
  flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in raw.items()}
  out = augment(flat, a)
  return {k: v.reshape((n, -1) + v.shape[1:]) for k, v in zip(("inputs", "targets", "masks"), out)}
