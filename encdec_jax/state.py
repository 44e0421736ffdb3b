"""What a run trains: its state (params, Adam state, non-finite counters, the weights' moving
average) and its optimizer."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from encdec_jax.config import ExperimentConfig, TrainConfig

# What the train step does with a NaN/Inf loss or gradient (config.train.nonfinite).
NONFINITE_MODES = ("stop", "skip")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  nonfinite: jax.Array = None   # int32: steps whose loss or gradient was NaN/Inf (their update dropped)
  first_nonfinite: jax.Array = None  # int32: the first such step (0-based), -1 if none


@flax.struct.dataclass
class AveragedTrainState(TrainState):
  """The state of a run with config.train.ema > 0: TrainState and the moving average of its
  params (their tree). Its own class, not a TrainState field left None: a None field is a node
  of the checkpoint's tree, which then no longer restores a checkpoint written without it."""
  ema: Any = None


def weights(state: TrainState):
  """The weights a run is used with (evaluation, previews, swaps, calibration, init_from): the
  moving average of its params where config.train.ema keeps one, else the params."""
  return state.ema if isinstance(state, AveragedTrainState) else state.params


def with_params(state: TrainState, params, place=lambda tree: tree) -> TrainState:
  """`state` starting from `params` (a warm start): its moving average, where it has one, too.
  `place` (e.g. onto the devices) makes each of the two from `params` separately, so they never
  share a buffer (the train step donates its state, and a buffer cannot be donated twice)."""
  if isinstance(state, AveragedTrainState):
    return state.replace(params=place(params), ema=place(params))
  return state.replace(params=place(params))


def ema_update(ema, params, decay, applied=True):
  """The moving average after a step: decay x ema + (1 - decay) x params where `applied` (a bool,
  or one per member along the leaves' first axis), `ema` itself elsewhere; leaf by leaf, as
  ema + (1 - decay) x applied x (params - ema): one pass over both trees, no select."""
  w = (1 - decay) * jnp.asarray(applied, jnp.float32)

  def one(e, p):
    return e + (w.reshape(w.shape + (1,) * (e.ndim - w.ndim)) * (p - e)).astype(e.dtype)
  return jax.tree.map(one, ema, params)


def make_optimizer(c: TrainConfig) -> optax.GradientTransformation:
  """Adam at the constant lr: its state's layout, and init. The train step's updates use
  `adam_update` (the lr of the step, same state layout)."""
  return optax.adam(c.lr, b1=c.b1, b2=c.b2)


def lr_at(step, lr, steps, warmdown):
  """The learning rate of 0-based `step`: `lr`, except over the last `warmdown` fraction of
  `steps`, where it falls linearly to 0 (step steps - 1 gets lr / (warmdown * steps)). Pure jnp,
  so every argument may be traced (members carry their own lr and warmdown). A python warmdown
  of 0 is the constant lr itself: the compiled step then does not depend on `steps`, so a run
  resumed with more steps, or one of another length, reuses the same executable."""
  if isinstance(warmdown, (int, float)) and warmdown == 0:
    return lr
  n = warmdown * steps
  left = jnp.asarray(steps, jnp.float32) - jnp.asarray(step, jnp.float32)
  return lr * jnp.where(n > 0, jnp.clip(left / jnp.maximum(n, 1e-9), 0.0, 1.0), 1.0)


def clip_by_norm(grads, clip_norm):
  """`grads` scaled down to global norm `clip_norm` when longer (0: unchanged). Traced-safe."""
  norm = optax.global_norm(grads)
  scale = jnp.where(clip_norm > 0, jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-12)), 1.0)
  return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)


def adam_update(grads, opt_state, params, step, lr, b1, b2, steps, warmdown, clip_norm=0.0,
                critic_lr_scale=1.0, encoder_lr_scale=1.0):
  """One Adam update at `lr_at(step, ...)` of the gradient clipped to `clip_norm` (0: not
  clipped): the state has make_optimizer's layout (the lr is a scale after Adam's moments, not
  state), so a checkpoint restores whatever the schedule or the clipping. The identity critic's
  params (the "critic" group, models.IdentityCritic) and the realism critic's (the "realism"
  group, models.RealismCritic), where the model has them, move at `critic_lr_scale` x that lr (config.train.critic_lr_scale), and the shared encoder's (the
  "encoder" group) at `encoder_lr_scale` x (config.train.encoder_lr_scale; 0 freezes it)."""
  grads = clip_by_norm(grads, clip_norm)
  updates, opt_state = optax.adam(lr_at(step, lr, steps, warmdown), b1=b1, b2=b2).update(
      grads, opt_state, params)
  return scale_groups(updates, {"critic": critic_lr_scale, "realism": critic_lr_scale,
                                "encoder": encoder_lr_scale}), opt_state


def scale_groups(updates, scales: Mapping):
  """`updates` with each named param group's (updates["params"][name]) multiplied by its scale;
  a group the model does not have, or whose scale is the python number 1, is left as it is (so
  single runs at the defaults compile the plain Adam update)."""
  inner = updates.get("params", {}) if isinstance(updates, Mapping) else {}
  scaled = {name: jax.tree.map(lambda u, s=s: u * jnp.asarray(s, u.dtype), inner[name])
            for name, s in scales.items()
            if name in inner and not (isinstance(s, (int, float)) and s == 1)}
  return {**updates, "params": {**inner, **scaled}} if scaled else updates


def init_state(model, tx, cfg: ExperimentConfig, rng) -> TrainState:
  r = cfg.model.resolution
  params = model.init(rng, jnp.zeros((cfg.model.num_identities, 1, r, r, 3), jnp.float32))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                     nonfinite=jnp.zeros((), jnp.int32), first_nonfinite=jnp.full((), -1, jnp.int32))
  if cfg.train.ema > 0:
    return AveragedTrainState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
                              ema=params)
  return state
