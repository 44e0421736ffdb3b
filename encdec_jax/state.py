"""What a run trains: its state (params, Adam state, non-finite counters) and its optimizer."""
from __future__ import annotations

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


def make_optimizer(c: TrainConfig) -> optax.GradientTransformation:
  return optax.adam(c.lr, b1=c.b1, b2=c.b2)


def init_state(model, tx, cfg: ExperimentConfig, rng) -> TrainState:
  r = cfg.model.resolution
  params = model.init(rng, jnp.zeros((cfg.model.num_identities, 1, r, r, 3), jnp.float32))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    nonfinite=jnp.zeros((), jnp.int32), first_nonfinite=jnp.full((), -1, jnp.int32))
