"""From a config to what runs it, without training: the checked config, and the model with its
abstract state (shapes only, nothing compiled). Training (train.py), inference, evaluation,
describe and the benchmark all start here.

  cfg = assemble.checked_config(config_dict)    # every check, before any data or compile
  a = assemble.assemble(cfg)                     # a.model, a.tx, a.abstract_state
  params, step = assemble.restore_params(a, workdir)  # a trained run's, on one device
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax

from encdec_jax import config as config_lib
from encdec_jax import losses, models, state as state_lib, tracking
from encdec_jax.config import ConfigError, ExperimentConfig
from encdec_jax.data import device_augment, loading


def checked_config(cd) -> ExperimentConfig:
  """The typed config (config.from_config_dict: types and ranges), then each registry's check of
  the names it owns. ConfigError naming the field and the valid values; nothing is opened."""
  cfg = config_lib.from_config_dict(cd)
  models.check_model_config(cfg.model)
  try:
    terms = losses.parse_loss_spec(cfg.loss)
  except losses.LossSpecError as e:
    raise ConfigError(f"config.loss: {e}") from None
  critics = [t.name for t in terms if losses.is_adversary(t.name)]
  if critics and not cfg.model.critic_width:
    raise ConfigError(f"config.loss has {critics[0]!r}, which trains the model's identity critic, "
                      "but config.model.critic_width=0 (no critic); set it, e.g. 64")
  if any(t.name in losses.REALISM for t in terms) and not cfg.model.realism_width:
    raise ConfigError("config.loss has 'swap_realism', which trains the model's realism critic, "
                      "but config.model.realism_width=0 (no critic); set it, e.g. 16")
  loading.check_data_config(cfg)
  _one_of("data.augment_on", cfg.data.augment_on, device_augment.AUGMENT_ON)
  _one_of("train.nonfinite", cfg.train.nonfinite, state_lib.NONFINITE_MODES)
  _one_of("wandb.mode", cfg.wandb.mode, tracking.MODES)
  return cfg


def _one_of(key: str, value, valid):
  if value not in valid:
    raise ConfigError(f"config.{key}={value!r}; valid: {sorted(valid)}")


@dataclasses.dataclass(frozen=True)
class Assembly:
  cfg: ExperimentConfig
  model: Any                  # a models.EncDec (flax module; conv_impl resolved for the platform)
  tx: Any                     # the optimizer (optax)
  abstract_state: Any         # state.TrainState of ShapeDtypeStructs, unsharded

  @property
  def abstract_params(self):
    return self.abstract_state.params


def assemble(cfg: ExperimentConfig, platform: str | None = None) -> Assembly:
  """The model (conv_impl 'auto' resolved for `platform`, default: the first device's), its
  optimizer and the shapes of its train state. Traces init abstractly: no compile, no FLOPs."""
  model = models.build_model(cfg.model, platform)
  tx = state_lib.make_optimizer(cfg.train)
  abstract = jax.eval_shape(lambda rng: state_lib.init_state(model, tx, cfg, rng), jax.random.key(0))
  return Assembly(cfg, model, tx, abstract)


def restore(a: Assembly, workdir: str, step: int | None = None):
  """(train state, step) of the run in WORKDIR at `step` (default: its latest checkpoint), on one
  device. FileNotFoundError if it has no checkpoint; checkpoint errors as checkpoint.Checkpointer's."""
  from jax.sharding import SingleDeviceSharding

  from encdec_jax import checkpoint as ckpt_lib
  one = SingleDeviceSharding(jax.devices()[0])
  abstract = ckpt_lib.abstract_like(a.abstract_state, jax.tree.map(lambda _: one, a.abstract_state))
  ck = ckpt_lib.Checkpointer(workdir, a.cfg.train.keep_checkpoints)
  try:
    step = step if step is not None else ck.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
    state, _ = ck.restore(step, abstract)
  finally:
    ck.close()
  return state, int(step)


def restore_params(a: Assembly, workdir: str, step: int | None = None):
  """(weights, step): the weights of `restore`'s state the run is used with (state.weights: the
  params' moving average where config.train.ema kept one, else the params)."""
  state, step = restore(a, workdir, step)
  return state_lib.weights(state), step
