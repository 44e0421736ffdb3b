"""Typed, validated views of an experiment's ConfigDict.

Config files (experiments/configs/*.py) return ml_collections ConfigDicts; `from_config_dict`
checks every field and returns frozen dataclasses, so the model, data and train step see typed
values. Errors name the field, the bad value and what is valid, before anything is compiled.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field and the valid values."""


DATASETS = ("synthetic_faces", "folders", "arrays")
AUGMENT_ON = ("auto", "host", "device")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  arch: str = "original"
  bottleneck: int = 1024
  width: float = 1.0             # channel multiplier, 1.0 = the published sizes
  resolution: int = 64
  num_identities: int = 2
  conv_impl: str = "im2col"      # how convs are computed: "im2col", "xla" or "s2d" (same function)
  dtype: str = "float32"         # compute dtype; params stay float32
  learn_mask: bool = False       # decoders also output a face mask (a 4th channel)
  e_dims: int = 64               # df/liae: encoder widths e_dims x (1, 2, 4, 8) (DeepFaceLab)
  d_dims: int = 64               # df/liae: decoder widths d_dims x (8, 4, 2) (DeepFaceLab)
  upscale: str = "shuffle"       # upscale blocks: "shuffle" (pixel shuffle) or "resize" (NN + conv)
  pixel_norm: bool = False       # pixel-normalise the encoder's features before the bottleneck

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]


@dataclasses.dataclass(frozen=True)
class DataConfig:
  name: str = "synthetic_faces"  # or "folders": the user's ROOT/<identity>/*.png|jpg crops, or
                                 # "arrays": a .npz from experiments.export_data (no TensorFlow)
  root: str = ""                 # folders: the root holding one sub-folder per identity; arrays: the .npz
  min_size: int = 0              # folders: skip images whose short side is smaller; 0 = resolution/2
  resolution: int = 64
  identities: int = 2
  train_per_identity: int = 1000
  test_per_identity: int = 32
  seed: int = 0                  # the family of faces: traits and factors
  dir: str = ""                  # TFDS data_dir; "" = ~/.cache/encdec_jax/tfds
  warp: bool = True
  warp_scale: float = 0.03       # std of control-point noise, as a fraction of the image size
  flip: bool = True
  color_jitter: float = 0.05
  augment_on: str = "auto"       # "host" (numpy thread), "device" (jitted), "auto": device unless CPU


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  steps: int = 10000
  batch_size: int = 16           # per identity, global
  lr: float = 5e-5
  b1: float = 0.5
  b2: float = 0.999
  log_every: int = 50
  preview_every: int = 1000
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  nonfinite: str = "stop"        # a NaN/Inf loss or gradient: "stop" the run, or "skip" the step


@dataclasses.dataclass(frozen=True)
class MaskConfig:
  enabled: bool = False          # weight the loss by the data's face mask
  eye_multiplier: float = 3.0    # eye regions count this many times
  mouth_multiplier: float = 2.0  # mouth region counts this many times
  learned_weight: float = 1.0    # weight of the learned mask's MSE to the data's face mask


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  judges: bool = True            # identity-transfer and pose/expression judges (encdec_jax/judges.py)
  every: int = 0                 # also evaluate every this many steps (0: only at the end)
  judge_steps: int = 400         # training steps of each judge (cached per dataset)


@dataclasses.dataclass(frozen=True)
class WandbConfig:
  mode: str = "offline"
  project: str = "encdec_jax"
  group: str = ""
  name: str = ""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  seed: int
  loss: tuple                    # of losses.LossTerm
  loss_spec: str
  model: ModelConfig
  data: DataConfig
  train: TrainConfig
  wandb: WandbConfig
  mask: MaskConfig = MaskConfig()
  eval: EvalConfig = EvalConfig()


def _section(cd: Any, name: str, cls):
  """Builds dataclass `cls` from cd[name], refusing unknown keys and wrong types."""
  sub = cd[name] if name else cd
  d = dict(sub.items()) if hasattr(sub, "items") else dict(sub)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - set(fields))
  if unknown:
    raise ConfigError(f"unknown config key(s) {[f'{name}.{k}' for k in unknown]}; "
                      f"valid keys in {name!r}: {sorted(fields)}")
  out = {}
  for k, v in d.items():
    default = getattr(cls(), k) if k in fields else None
    want = type(default)
    if want is float and isinstance(v, int) and not isinstance(v, bool):
      v = float(v)
    if want is not type(v):
      raise ConfigError(f"config.{name}.{k}={v!r} has type {type(v).__name__}; expected {want.__name__}")
    if want is float and not math.isfinite(v):  # lr=inf would train, and save, inf parameters
      raise ConfigError(f"config.{name}.{k}={v!r}; must be a finite number")
    out[k] = v
  return cls(**out)


def default_for(key: str):
  """The typed default of a dotted config field ("data.augment_on"), or None: what a config saved
  before the field existed meant."""
  section, _, field = key.partition(".")
  cls = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "mask": MaskConfig,
         "eval": EvalConfig, "wandb": WandbConfig}.get(section)
  if cls is None or field not in {f.name for f in dataclasses.fields(cls)}:
    return None
  return getattr(cls(), field)


def _check(cond: bool, msg: str):
  if not cond:
    raise ConfigError(msg)


def from_config_dict(cd) -> ExperimentConfig:
  """Validates a ConfigDict and returns typed config. Raises ConfigError naming the field."""
  from encdec_jax.losses import LossSpecError, parse_loss_spec
  from encdec_jax.models import ARCHITECTURES, UPSCALE_MODES, check_model_config

  top = {"seed", "loss", "model", "data", "train", "wandb", "mask", "eval"}
  unknown = sorted(set(cd.keys()) - top)
  _check(not unknown, f"unknown config key(s) {unknown}; valid top-level keys: {sorted(top)}")
  data = _section(cd, "data", DataConfig)
  m = dict(cd.model.items())
  m["resolution"], m["num_identities"] = data.resolution, data.identities
  model = _section({"model": m}, "model", ModelConfig)
  train = _section(cd, "train", TrainConfig)
  wb = _section(cd, "wandb", WandbConfig)
  mask = _section(cd, "mask", MaskConfig) if "mask" in cd else MaskConfig()
  ev = _section(cd, "eval", EvalConfig) if "eval" in cd else EvalConfig()
  _check(ev.every >= 0 and ev.judge_steps >= 1,
         f"config.eval.every={ev.every} must be >= 0 and config.eval.judge_steps={ev.judge_steps} >= 1")
  _check(mask.learned_weight >= 0, f"config.mask.learned_weight={mask.learned_weight}; must be >= 0")
  _check(mask.eye_multiplier >= 1 and mask.mouth_multiplier >= 1,
         f"config.mask multipliers ({mask.eye_multiplier}, {mask.mouth_multiplier}) must be >= 1")

  _check(model.arch in ARCHITECTURES,
         f"config.model.arch={model.arch!r} is not an architecture; valid: {sorted(ARCHITECTURES)}")
  _check(model.bottleneck > 0, f"config.model.bottleneck={model.bottleneck}; must be > 0")
  _check(model.width > 0, f"config.model.width={model.width}; must be > 0")
  _check(model.conv_impl in ("im2col", "xla", "s2d"),
         f"config.model.conv_impl={model.conv_impl!r}; valid: ['im2col', 's2d', 'xla']")
  _check(model.dtype in _DTYPES, f"config.model.dtype={model.dtype!r}; valid: {sorted(_DTYPES)}")
  _check(model.upscale in UPSCALE_MODES,
         f"config.model.upscale={model.upscale!r}; valid: {sorted(UPSCALE_MODES)}")
  _check(model.e_dims > 0 and model.d_dims > 0,
         f"config.model.e_dims/d_dims=({model.e_dims}, {model.d_dims}); must be > 0")
  _check(data.name in DATASETS, f"config.data.name={data.name!r}; valid: {sorted(DATASETS)}")
  if data.name == "folders":
    from encdec_jax.data.folders import DataError, identity_folders
    _check(bool(data.root), "config.data.root is empty; data.name='folders' reads ROOT/<identity>/*.png|jpg")
    try:
      found = identity_folders(data.root)
    except DataError as e:
      raise ConfigError(f"config.data.root: {e}") from None
    _check(len(found) == data.identities,
           f"config.data.root={data.root!r} has {len(found)} identity folders {found}; "
           f"set config.data.identities={len(found)} (it is {data.identities})")
    _check(not (mask.enabled or model.learn_mask),
           "config.mask.enabled / config.model.learn_mask need face masks; data.name='folders' has "
           "none: add --config.mask.enabled=False (and leave model.learn_mask off)")
  _check(data.resolution > 0, f"config.data.resolution={data.resolution}; must be > 0")
  _check(data.identities >= 2, f"config.data.identities={data.identities}; need at least 2 identities")
  _check(data.train_per_identity >= train.batch_size,
         f"config.data.train_per_identity={data.train_per_identity} is smaller than "
         f"config.train.batch_size={train.batch_size}")
  _check(data.test_per_identity >= 1, f"config.data.test_per_identity={data.test_per_identity}; must be >= 1")
  _check(0 <= data.color_jitter < 1, f"config.data.color_jitter={data.color_jitter}; must be in [0, 1)")
  _check(data.augment_on in AUGMENT_ON,
         f"config.data.augment_on={data.augment_on!r}; valid: {sorted(AUGMENT_ON)}")
  _check(0 <= data.warp_scale < 0.2, f"config.data.warp_scale={data.warp_scale}; must be in [0, 0.2)")
  _check(train.steps >= 0, f"config.train.steps={train.steps}; must be >= 0")
  _check(train.batch_size >= 1, f"config.train.batch_size={train.batch_size}; must be >= 1")
  _check(train.lr > 0, f"config.train.lr={train.lr}; must be > 0")
  _check(0 <= train.b1 < 1 and 0 <= train.b2 < 1, f"config.train.b1/b2=({train.b1}, {train.b2}); must be in [0, 1)")
  _check(train.nonfinite in ("stop", "skip"),
         f"config.train.nonfinite={train.nonfinite!r}; valid: ['skip', 'stop']")
  for k in ("log_every", "preview_every", "checkpoint_every", "keep_checkpoints"):
    _check(getattr(train, k) >= 1, f"config.train.{k}={getattr(train, k)}; must be >= 1")
  _check(wb.mode in ("offline", "online", "disabled"),
         f"config.wandb.mode={wb.mode!r}; valid: ['disabled', 'offline', 'online']")
  check_model_config(model)  # per-architecture constraints (resolution), before any compile
  _check(isinstance(cd.seed, int), f"config.seed={cd.seed!r}; must be an int")
  try:
    loss = parse_loss_spec(cd.loss)
  except LossSpecError as e:
    raise ConfigError(f"config.loss: {e}") from None
  return ExperimentConfig(seed=cd.seed, loss=loss, loss_spec=cd.loss, model=model, data=data,
                          train=train, wandb=wb, mask=mask, eval=ev)
