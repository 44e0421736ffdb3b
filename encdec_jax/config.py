"""The experiment config: one typed, frozen dataclass per section, and the only place where a field's
default, type and range are written.

Config files (experiments/configs/*.py) start from `default_config_dict()` (these defaults as an
ml_collections ConfigDict, so `--config.a.b=v` flags and W&B agents' arguments work) and change what
their variant needs with `override`. `from_config_dict` turns a ConfigDict back into the dataclasses;
each section checks its own types and ranges in `__post_init__`. Names that a registry owns (the
architecture, conv form, loss terms, dataset, wandb mode) are checked by that registry:
`encdec_jax.assemble.checked_config` runs them all. Files are checked where the data is opened.

Adding a field: one line in its dataclass below (default and comment), one line in the README's
config table, and a check in the section's `_check` if it has a range.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax.numpy as jnp


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field and the valid values."""


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
INPUT_NORMS = ("none", "image", "local", "contrast", "contrast_only")  # config.model.input_norm
MAX_SEED = 2 ** 31 - 1  # seeds (config.seed, config.data.seed) are in [0, MAX_SEED]: numpy's
                        # generators refuse negatives, JAX's keys take 32 bits
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _require(cond: bool, msg: str):
  if not cond:
    raise ConfigError(msg)


@dataclasses.dataclass(frozen=True)
class _Section:
  """Type checks (an int is accepted for a float field) and the subclass's `_check`."""
  section: ClassVar[str] = ""

  def __post_init__(self):
    for f in dataclasses.fields(self):
      want, v = _TYPES.get(f.type), getattr(self, f.name)
      if want is None:
        continue
      if want is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
        object.__setattr__(self, f.name, v)
      if type(v) is not want:
        raise ConfigError(f"config.{self.section}.{f.name}={v!r} has type {type(v).__name__}; "
                          f"expected {want.__name__}")
      if want is float and not math.isfinite(v):  # lr=inf would train, and save, inf parameters
        raise ConfigError(f"config.{self.section}.{f.name}={v!r}; must be a finite number")
    self._check()

  def _check(self):
    pass

  def _positive(self, *names: str, least: float = 1):
    for k in names:
      _require(getattr(self, k) >= least,
               f"config.{self.section}.{k}={getattr(self, k)}; must be >= {least:g}")


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
  section: ClassVar[str] = "model"
  arch: str = "original"         # a key of encdec_jax.models.ARCHITECTURES
  bottleneck: int = 1024         # size of the shared latent (the Dense after the encoder's convs)
  width: float = 1.0             # channel multiplier, 1.0 = the published sizes
  conv_impl: str = "auto"        # convs as "im2col" (fast on XLA:CPU), "xla", "s2d" (same function),
                                 # or "auto": im2col on CPU, xla on GPU/TPU (models.resolve_conv_impl)
  dtype: str = "float32"         # compute dtype ("bfloat16" on accelerators); params stay float32
  learn_mask: bool = False       # decoders also output a face mask (a 4th channel)
  e_dims: int = 64               # df/liae: encoder widths e_dims x (1, 2, 4, 8) (DeepFaceLab)
  d_dims: int = 64               # df/liae: decoder widths d_dims x (8, 4, 2) (DeepFaceLab)
  upscale: str = "shuffle"       # upscale blocks: "shuffle" (pixel shuffle) or "resize" (NN + conv)
  pixel_norm: bool = False       # pixel norm before the bottleneck (DeepFaceLab's "-u")
  critic_width: int = 0          # > 0: an identity critic on the shared code (hidden width), which
                                 # the loss term identity_adversary trains; 0: none (no params)
  realism_width: int = 0         # > 0: a realism critic on decoded images (a patch discriminator,
                                 # first conv width; one output per identity), which the loss term
                                 # swap_realism trains; 0: none (no params)
  input_norm: str = "none"       # what the encoder sees: "none" (the crop); "image": each crop
                                 # standardised per channel (its own mean and std), so the code gets
                                 # the face's shapes without its tone or contrast; "local": the crop
                                 # and, as 3 more channels, its local contrast normalisation (a dark
                                 # face's open mouth as strong as a pale one's); "contrast": the
                                 # crop and the magnitude of such a normalisation in a 1-px window
                                 # (where the crop changes, not which way: a light brow and a dark
                                 # one read alike; the default sweep's); "contrast_only": the
                                 # magnitude alone. Decoders still draw colours
  # Not config keys: the data's, copied here so that the model sees one value (from_config_dict).
  resolution: int = 64
  num_identities: int = 2

  def _check(self):
    self._positive("bottleneck", "e_dims", "d_dims", "resolution")
    _require(self.width > 0, f"config.model.width={self.width}; must be > 0")
    _require(self.critic_width >= 0, f"config.model.critic_width={self.critic_width}; must be >= 0 "
             "(0: no identity critic)")
    _require(self.realism_width >= 0, f"config.model.realism_width={self.realism_width}; must be >= 0 "
             "(0: no realism critic)")
    _require(self.dtype in DTYPES, f"config.model.dtype={self.dtype!r}; valid: {sorted(DTYPES)}")
    _require(self.input_norm in INPUT_NORMS,
             f"config.model.input_norm={self.input_norm!r}; valid: {list(INPUT_NORMS)}")

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def out_channels(self) -> int:
    """The decoders' output channels: RGB, and the learned mask with learn_mask."""
    return 4 if self.learn_mask else 3


DERIVED = ("model.resolution", "model.num_identities")  # set from data.*, not config keys


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
  section: ClassVar[str] = "data"
  name: str = "synthetic_faces"  # built-in procedural faces (TFDS, no download); "folders": the
                                 # user's ROOT/<identity>/*.png|jpg crops; "arrays": a .npz from
                                 # experiments.export_data (no TensorFlow)
  root: str = ""                 # folders: the root holding one sub-folder per identity; arrays: the .npz
  min_size: int = 0              # folders: skip images whose short side is smaller; 0 = max(8, resolution/2)
  resolution: int = 64           # a multiple of 16 (32 for df/liae)
  identities: int = 2            # N >= 2: one decoder each
  train_per_identity: int = 1000
  test_per_identity: int = 32    # held out, each with its ground-truth swaps
  seed: int = 0                  # the family of faces: traits and factors
  face_type: str = "whole_face"  # how the aligned crop frames the face: a key of align.FACE_TYPES
                                 # ("head", "whole_face", "full_face"); synthetic faces and extract
  frame_resolution: int = 0      # synthetic faces: the frame's side (the head with its hair), which
                                 # swaps are pasted back into and judged in; 0 = 2 x resolution
  dir: str = ""                  # TFDS data_dir; "" = ~/.cache/encdec_jax/tfds
  warp: bool = True              # Deepfakes random warp of the inputs (targets stay unwarped)
  warp_scale: float = 0.03       # std of control-point noise, as a fraction of the image size
  warp_anneal: int = 0           # the warp's noise falls linearly from warp_scale at step 0 to none
                                 # at this step (and after it); 0 = the same at every step
  flip: bool = True
  color_jitter: float = 0.05     # per-image gain and bias, on inputs and targets alike
  input_jitter: float = 0.0      # colour jitter of the encoder's inputs only (targets keep their
                                 # colours): per-image, per-channel gain in 1 +- s, bias in +- s/2
  augment_on: str = "auto"       # "host" (numpy thread), "device" (jitted), "auto": device unless CPU

  @property
  def frame_side(self) -> int:
    """The synthetic frames' side in pixels."""
    return self.frame_resolution or 2 * self.resolution

  def _check(self):
    self._positive("resolution", "test_per_identity")
    _require(self.frame_resolution == 0 or self.frame_resolution >= self.resolution,
             f"config.data.frame_resolution={self.frame_resolution}; must be 0 (2 x resolution) or "
             f">= config.data.resolution={self.resolution}")
    _require(self.identities >= 2, f"config.data.identities={self.identities}; need at least 2 identities")
    _require(self.min_size >= 0, f"config.data.min_size={self.min_size}; must be >= 0")
    _require(0 <= self.seed <= MAX_SEED, f"config.data.seed={self.seed}; must be in [0, {MAX_SEED}]")
    _require(0 <= self.color_jitter < 1, f"config.data.color_jitter={self.color_jitter}; must be in [0, 1)")
    _require(0 <= self.input_jitter < 1, f"config.data.input_jitter={self.input_jitter}; must be in [0, 1)")
    _require(0 <= self.warp_scale < 0.2, f"config.data.warp_scale={self.warp_scale}; must be in [0, 0.2)")
    _require(self.warp_anneal >= 0,
             f"config.data.warp_anneal={self.warp_anneal}; must be >= 0 (0: no annealing)")


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
  section: ClassVar[str] = "train"
  steps: int = 20000
  batch_size: int = 16           # per identity, global over devices
  lr: float = 5e-5               # Adam as the original: lr 5e-5, b1 0.5, b2 0.999
  b1: float = 0.5
  b2: float = 0.999
  warmdown: float = 0.0          # the last fraction of train.steps over which lr falls linearly to 0
                                 # (0: constant lr; a resumed run that extends steps re-times it)
  clip_norm: float = 0.0         # the gradient's global norm is clipped to this before Adam (0: off)
  critic_lr_scale: float = 1.0   # the identity critic (model.critic_width > 0) and the realism
                                 # critic (model.realism_width > 0) learn at lr x this: a critic
                                 # that keeps up with what it is trained against
  encoder_lr_scale: float = 1.0  # the shared encoder (its "encoder" params) learns at lr x this; 0
                                 # freezes it: a run from train.init_from fits its decoders to the
                                 # pretrained code (faceswap's "freeze weights")
  log_every: int = 50
  preview_every: int = 1000
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  nonfinite: str = "stop"        # a NaN/Inf loss or gradient: "stop" the run (last good checkpoint
                                 # kept), or "skip" the step
  init_from: str = ""            # a run's workdir: start from its latest checkpoint's encoder and the
                                 # decoders of the identities both runs have (encdec_jax/warm_start.py)
  ema: float = 0.0               # > 0: the run keeps an exponential moving average of its params at
                                 # this decay (about the last 1 / (1 - ema) steps), updated with each
                                 # applied step, and is used with it: evaluation, previews, swaps and
                                 # init_from read the average (0: the trained params themselves)

  def _check(self):
    _require(self.steps >= 0, f"config.train.steps={self.steps}; must be >= 0")
    self._positive("batch_size", "log_every", "preview_every", "checkpoint_every", "keep_checkpoints")
    _require(self.lr > 0, f"config.train.lr={self.lr}; must be > 0")
    _require(0 <= self.warmdown <= 1, f"config.train.warmdown={self.warmdown}; must be in [0, 1]")
    _require(self.critic_lr_scale > 0,
             f"config.train.critic_lr_scale={self.critic_lr_scale}; must be > 0 (1: at train.lr)")
    _require(self.encoder_lr_scale >= 0,
             f"config.train.encoder_lr_scale={self.encoder_lr_scale}; must be >= 0 (0: the encoder "
             "frozen, 1: at train.lr)")
    _require(self.clip_norm >= 0, f"config.train.clip_norm={self.clip_norm}; must be >= 0 (0: off)")
    _require(0 <= self.ema < 1, f"config.train.ema={self.ema}; must be in [0, 1) (0: off, e.g. 0.99)")
    _require(0 <= self.b1 < 1 and 0 <= self.b2 < 1,
             f"config.train.b1/b2=({self.b1}, {self.b2}); must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class MaskConfig(_Section):
  # The defaults are the recipe's (BENCHMARKS.md, "Recipe").
  section: ClassVar[str] = "mask"
  enabled: bool = True           # weight the loss by the data's face mask (needs masks)
  eye_multiplier: float = 10.0   # eye regions count this many times
  mouth_multiplier: float = 5.0  # mouth region counts this many times
  learned_weight: float = 1.0    # with model.learn_mask: weight of the mask's MSE to the data's mask

  def _check(self):
    _require(self.learned_weight >= 0, f"config.mask.learned_weight={self.learned_weight}; must be >= 0")
    _require(self.eye_multiplier >= 1 and self.mouth_multiplier >= 1,
             f"config.mask multipliers ({self.eye_multiplier}, {self.mouth_multiplier}) must be >= 1")


TONE_MODES = ("none", "train")  # config.eval.tone
CODE_MATCH_MODES = ("none", "train")  # config.eval.code_match


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Section):
  section: ClassVar[str] = "eval"
  judges: bool = True            # identity transfer / leakage and pose-expression error of swaps
  every: int = 0                 # also evaluate every this many steps (0: only at the end)
  tone: str = "none"             # "train": every swap's colour calibrated on training faces before it
                                 # is converted (evaluation, previews, grids, experiments.swap;
                                 # encdec_jax/calibration.py); "none": as decoded
  code_match: str = "none"       # "train": every swap's shared code moved, unit by unit, from the
                                 # source identity's mean and spread onto the target's, measured on
                                 # training faces, before the target's decoder reads it (the same
                                 # places; encdec_jax/codematch.py); "none": the code as encoded

  def _check(self):
    _require(self.every >= 0, f"config.eval.every={self.every}; must be >= 0")
    _require(self.tone in TONE_MODES, f"config.eval.tone={self.tone!r}; valid: {', '.join(TONE_MODES)}")
    _require(self.code_match in CODE_MATCH_MODES,
             f"config.eval.code_match={self.code_match!r}; valid: {', '.join(CODE_MATCH_MODES)}")


@dataclasses.dataclass(frozen=True)
class WandbConfig(_Section):
  section: ClassVar[str] = "wandb"
  mode: str = "offline"          # offline | online | disabled (encdec_jax.tracking.MODES)
  project: str = "encdec_jax"
  group: str = ""                # sweeps set this so their runs group together
  name: str = ""                 # "" = the workdir's name


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "mask": MaskConfig,
            "eval": EvalConfig, "wandb": WandbConfig}

DEFAULT_LOSS = "ssim:1.0,mae:1.0"  # the recipe (BENCHMARKS.md, "Recipe")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  seed: int = 0                  # init and augmentation; the data has its own seed (data.seed)
  loss: str = DEFAULT_LOSS       # weighted terms of encdec_jax.losses.LOSSES (README table)
  model: ModelConfig = ModelConfig()
  data: DataConfig = DataConfig()
  train: TrainConfig = TrainConfig()
  mask: MaskConfig = MaskConfig()
  eval: EvalConfig = EvalConfig()
  wandb: WandbConfig = WandbConfig()

  def __post_init__(self):
    _require(type(self.seed) is int, f"config.seed={self.seed!r}; must be an int")
    _require(0 <= self.seed <= MAX_SEED, f"config.seed={self.seed}; must be in [0, {MAX_SEED}]")
    _require(isinstance(self.loss, str), f"config.loss={self.loss!r}; must be a string like {DEFAULT_LOSS!r}")
    _require(self.data.train_per_identity >= self.train.batch_size,
             f"config.data.train_per_identity={self.data.train_per_identity} is smaller than "
             f"config.train.batch_size={self.train.batch_size}")


# Fields that older runs' config.json may hold and that no longer exist: dropped when read.
REMOVED = {"eval.judge_steps": "the judges are fitted in closed form; nothing trains for steps"}


def default_config_dict():
  """The defaults above as an ml_collections ConfigDict: what every config file starts from."""
  import ml_collections
  d = dataclasses.asdict(ExperimentConfig())
  for key in DERIVED:
    section, field = key.split(".")
    del d[section][field]
  return ml_collections.ConfigDict(d)


def _section(d: dict, name: str, cls, extra: dict | None = None):
  """Builds dataclass `cls` from the mapping d, refusing unknown keys."""
  d = dict(d.items()) if hasattr(d, "items") else dict(d)
  valid = {f.name for f in dataclasses.fields(cls)} - {k.split(".")[1] for k in DERIVED
                                                       if k.startswith(name + ".")}
  unknown = sorted(set(d) - valid)
  if unknown:
    raise ConfigError(f"unknown config key(s) {[f'{name}.{k}' for k in unknown]}; "
                      f"valid keys in {name!r}: {sorted(valid)}")
  return cls(**d, **(extra or {}))


def from_config_dict(cd) -> ExperimentConfig:
  """A ConfigDict (or a config.json's dict) -> typed config; ConfigError naming the field. Fields
  in REMOVED are dropped; a missing section or field takes its default."""
  cd = drop_removed(cd.to_dict() if hasattr(cd, "to_dict") else dict(cd))
  unknown = sorted(set(cd) - {"seed", "loss", *SECTIONS})
  _require(not unknown, f"unknown config key(s) {unknown}; valid top-level keys: "
                        f"{sorted(['seed', 'loss', *SECTIONS])}")
  data = _section(cd.get("data", {}), "data", DataConfig)
  sections = {name: _section(cd.get(name, {}), name, cls) for name, cls in SECTIONS.items()
              if name not in ("data", "model")}
  model = _section(cd.get("model", {}), "model", ModelConfig,
                   {"resolution": data.resolution, "num_identities": data.identities})
  top = {k: cd[k] for k in ("seed", "loss") if k in cd}
  return ExperimentConfig(**top, model=model, data=data, **sections)


def drop_removed(d: dict) -> dict:
  """A copy of a (nested) config dict without the fields in REMOVED."""
  d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
  for key in REMOVED:
    section, field = key.split(".")
    if isinstance(d.get(section), dict):
      d[section].pop(field, None)
  return d


def default_for(key: str):
  """The typed default of a dotted config field ("data.augment_on"), or None: what a config saved
  before the field existed meant. (A field whose old behaviour differs from its new default
  must say so here.)"""
  section, _, field = key.partition(".")
  if section in ("seed", "loss") and not field:
    return getattr(ExperimentConfig(), section)
  cls = SECTIONS.get(section)
  if cls is None or field not in {f.name for f in dataclasses.fields(cls)}:
    return None
  return getattr(cls(), field)


def override(cd, values: dict[str, Any]):
  """A copy of ConfigDict `cd` with {'a.b': v} (or {'config.a.b': v}) set: the one override helper
  of config files, sweeps, --set flags and tests. A number given as a string ('1e-3', from YAML
  or a flag) is parsed, an int becomes a float where the field is one; an unknown section or
  field raises ConfigError listing the valid ones."""
  cd = cd.copy_and_resolve_references()
  for key, value in values.items():
    path = key.removeprefix("config.").split(".")
    node = cd
    for p in path[:-1]:
      if p not in node or not hasattr(node[p], "keys"):
        raise ConfigError(f"{key}: no section {p!r}; valid: {sorted(node.keys())}")
      node = node[p]
    if path[-1] not in node:
      raise ConfigError(f"{key}: no field {path[-1]!r}; valid: {sorted(node.keys())}")
    old = node[path[-1]]
    if isinstance(old, (int, float)) and not isinstance(old, bool):
      value = number(value)
      if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
      if type(old) is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # q_uniform proposes 64.0 for an int field
    try:
      node[path[-1]] = value
    except TypeError:
      raise ConfigError(f"{key}={value!r}: expected {type(old).__name__} like {old!r}") from None
  return cd


def number(v):
  """YAML 1.1 (PyYAML) reads `1e-3` as a string: such strings become numbers; a numpy scalar (a
  sweep engine's proposal) becomes the Python number; the rest stays."""
  import re
  if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0:
    return v.item()
  if isinstance(v, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", v.strip()):
    return float(v) if any(c in v for c in ".eE") else int(v)
  return v


def flatten(d: dict, prefix: str = "") -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}: a config's fields by their dotted names."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
