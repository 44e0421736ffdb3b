"""What the training loop (encdec_jax/train.py) drives: a compiled program of one or more runs.

Two programs implement `Program`, the one interface the loop uses:
- `Trainer`: one run, data-parallel over a mesh of devices and processes;
- `members.Group`: several runs of a sweep as the members of one vmapped program.
Member i of a program is a run with its own folder; a Trainer has one member.
"""
from __future__ import annotations

import functools
from typing import Any, Iterator, Protocol

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from encdec_jax import assemble as assemble_lib
from encdec_jax import checkpoint as ckpt_lib
from encdec_jax import models
from encdec_jax import state as state_lib
from encdec_jax import warm_start
from encdec_jax.config import ConfigError, ExperimentConfig
from encdec_jax.data import device_augment
from encdec_jax.data.pipeline import Augment, TrainSource
from encdec_jax.decode import make_decode_all
from encdec_jax.losses import compose
from encdec_jax.state import TrainState
from encdec_jax.step import make_train_step


class Program(Protocol):
  """A compiled program of m runs (members), as the training loop drives it."""
  m: int                         # members
  cfg: ExperimentConfig          # member 0's config (the fields members share)
  model: Any
  decode_all: Any                # decode.make_decode_all(model)
  batch_keys: tuple[str, ...]
  augment_on_device: bool        # batches are raw uint8 and augmented on the devices

  def describe(self) -> str: ...
  def init(self, warm: list | None = None) -> Any:
    """The initial state; `warm`: per run, a warm_start.Source (or None) whose weights it takes."""
  def restore(self, checkpointers, step: int) -> Any: ...
  def batches(self, trn: dict, start: int) -> Iterator[dict]:
    """Device batches, one per step from `start`."""
  def step(self, state, batch) -> tuple[Any, dict]:
    """Jitted once, state donated."""
  def rows(self, metrics: dict) -> list[dict]:
    """[member 0's scalars, ...] on the host."""
  def nonfinite(self, state) -> tuple[np.ndarray, np.ndarray]:
    """(non-finite step counts (m,), first bad step (m,))."""
  def member_params(self, state, i: int) -> Any:
    """Member i's weights (state.weights: the moving average where train.ema keeps one), for
    decode_all."""
  def member_state(self, state, i: int) -> Any:
    """Member i's state in one run's layout, for saving."""
  def loss_terms_at(self, state, i: int, step: int) -> dict:
    """Member i's loss terms at `step`, for the non-finite message."""


def data_mesh(devices) -> tuple[Mesh, NamedSharding]:
  """(the mesh whose one axis, "data", splits every batch, replicated sharding on it)."""
  mesh = Mesh(np.asarray(devices), ("data",))
  return mesh, NamedSharding(mesh, P())


def device_augmenter(cfg: ExperimentConfig, devices):
  """(whether batches are augmented on the devices, the augmentation of one run's raw batch)."""
  return (device_augment.on_device(cfg.data.augment_on, devices),
          functools.partial(device_augment.augment_batch, a=Augment.from_config(cfg.data)))


def train_source(cfg: ExperimentConfig, trn: dict, seed: int, rows=None) -> TrainSource:
  """The input pipeline of a run with `seed` on the train arrays (this process's `rows`)."""
  return TrainSource(trn["image"], trn["mask"], trn["identity"], cfg.data.identities,
                     cfg.train.batch_size, seed, Augment.from_config(cfg.data), rows=rows)


class Trainer:
  """One run compiled: model, optimizer, mesh, shardings, jitted step."""
  m = 1

  def __init__(self, cfg: ExperimentConfig, devices=None):
    self.cfg = cfg
    devices = np.array(devices if devices is not None else jax.devices())
    if cfg.train.batch_size % devices.size:
      raise ConfigError(f"config.train.batch_size={cfg.train.batch_size} (per identity, global) "
                        f"must be divisible by the {devices.size} devices")
    self.mesh, self.replicated = data_mesh(devices)
    self.batch_sharding = NamedSharding(self.mesh, P(None, "data"))  # (N, B, ...): split B
    a = assemble_lib.assemble(cfg, devices.flat[0].platform)
    self.model, self.tx = a.model, a.tx
    self.conv_impl = a.model.cfg.conv_impl  # 'auto' resolved for these devices
    init = lambda rng: state_lib.init_state(self.model, self.tx, cfg, rng)
    abstract = a.abstract_state
    self.state_sharding = jax.tree.map(lambda _: self.replicated, abstract)
    self.abstract_state = ckpt_lib.abstract_like(abstract, self.state_sharding)
    self._init = jax.jit(init, out_shardings=self.state_sharding).lower(
        jax.random.key(0)).compile(models.INIT_COMPILER_OPTIONS)
    self.batch_keys = compose.batch_keys(compose.needs_masks(cfg))
    self.step_fn = jax.jit(make_train_step(self.model, cfg, cfg.train.nonfinite),
                           in_shardings=(self.state_sharding, self.batch_sharding),
                           out_shardings=(self.state_sharding, self.replicated),
                           donate_argnums=0)
    self.decode_all = make_decode_all(self.model)
    self.augment_on_device, augment = device_augmenter(cfg, devices)
    self._augment = jax.jit(augment, in_shardings=self.batch_sharding, out_shardings=self.batch_sharding)
    self.source = None  # set by batches()

  def describe(self) -> str:
    m = self.cfg.model
    return (f"model: {m.arch}, bottleneck {m.bottleneck}, {m.resolution}x{m.resolution}, dtype "
            f"{m.dtype}, conv_impl {self.conv_impl}"
            + (f" (auto on {jax.devices()[0].platform})" if m.conv_impl == "auto" else ""))

  def init(self, warm: list | None = None) -> TrainState:
    state = self._init(jax.random.key(self.cfg.seed))
    if not warm or warm[0] is None:
      return state
    params = warm_start.apply(jax.device_get(state.params), warm[0])
    put = lambda x, s: jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])  # noqa: E731
    return state_lib.with_params(state, params, lambda t: jax.tree.map(put, t, self.state_sharding.params))

  def restore(self, checkpointers, step: int) -> TrainState:
    return checkpointers[0].restore(step, self.abstract_state)[0]

  def global_batch_shape(self) -> tuple:
    c = self.cfg
    return (c.data.identities, c.train.batch_size, c.data.resolution, c.data.resolution, 3)

  def process_rows(self) -> tuple[int, int]:
    """(start, stop): the rows of each identity's global batch that live on this process's
    devices, the share its input pipeline produces (all rows with one process)."""
    idx = self.batch_sharding.addressable_devices_indices_map(self.global_batch_shape())
    starts = [sl[1].start or 0 for sl in idx.values()]
    stops = [sl[1].stop if sl[1].stop is not None else self.cfg.train.batch_size for sl in idx.values()]
    lo, hi = min(starts), max(stops)
    if sum(b - a for a, b in set(zip(starts, stops))) != hi - lo:
      raise ValueError(f"process {jax.process_index()}'s devices hold non-contiguous batch rows "
                       f"{sorted(set(zip(starts, stops)))}")
    return lo, hi

  def device_batch(self, batch: dict) -> dict:
    """Host batch (this process's rows, see process_rows) -> global sharded arrays. A raw batch
    (TrainSource.raw_batch: uint8 images and drawn parameters) is augmented on the devices."""
    if "images" in batch:
      n, b = self.global_batch_shape()[:2]
      raw = {k: jax.make_array_from_process_local_data(self.batch_sharding, v, (n, b) + v.shape[2:])
             for k, v in batch.items()}
      return {k: v for k, v in self._augment(raw).items() if k in self.batch_keys}
    shape = self.global_batch_shape()
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, batch[k], shape)
            for k in self.batch_keys}

  def host_batch(self, source, step: int) -> dict:
    """Step `step`'s batch as this process's input pipeline makes it (raw when augmenting on
    the devices)."""
    return source.raw_batch(step) if self.augment_on_device else source.batch(step)

  def batches(self, trn: dict, start: int):
    self.source = train_source(self.cfg, trn, self.cfg.seed, rows=self.process_rows())
    return map(self.device_batch, self.source.iterate(start, raw=self.augment_on_device))

  def step(self, state, batch):
    return self.step_fn(state, batch)

  def rows(self, metrics: dict) -> list[dict]:
    return [dict(metrics)]

  def nonfinite(self, state) -> tuple[np.ndarray, np.ndarray]:
    return np.array([int(state.nonfinite)]), np.array([int(state.first_nonfinite)])

  def member_params(self, state, i: int):
    return state_lib.weights(state)

  def member_state(self, state, i: int):
    return state

  def loss_terms_at(self, state, i: int, step: int) -> dict:
    """The loss terms of `step`'s batch from `state` (not donated, nothing updated)."""
    batch = self.device_batch(self.host_batch(self.source, step))
    _, m = jax.jit(make_train_step(self.model, self.cfg, "stop"))(state, batch)
    return jax.device_get(m)
