"""Starting a run from another run's weights (`config.train.init_from`): DeepFaceLab's pretrain
mode, where a shared encoder trained on many identities is fine-tuned on a pair.

The new run takes the source run's latest checkpoint: its encoder whole, and the decoder of every
identity the two runs share, by name (image folders: the folder's name; generated data: the dataset,
its family `data.seed` and the index, since identity i of a family is the same face whatever the
number of identities). Every other decoder, the optimizer's moments and the step start fresh.
At another `model.bottleneck` than the source's, the weights the bottleneck sizes (the Dense into
the code and the kernel out of it, in Original) start fresh too, and every other weight is taken:
a sweep's bottleneck axis over one pretrained encoder. Any other difference in shape is an error.
Only a run's first start reads the source: a resumed run continues from its own checkpoint.

    source = load(cfg)                 # before any data is loaded: bad paths and shapes fail here
                                       # (load_all: several runs, each source read once)
    params = apply(params, source)     # numpy params of one run, encoder and matched decoders
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np

from encdec_jax.config import ConfigError
from encdec_jax.data.loading import DATA_REPORT
from encdec_jax.workdir import CONFIG, config_hash, parse_config_json


class WarmStartError(ConfigError):
  """config.train.init_from cannot start this run; the message names the field, the run and why."""


@dataclasses.dataclass(frozen=True)
class Source:
  """The weights a run starts from and where they came from."""
  encoder: dict                 # numpy params of the source's encoder
  decoders: dict[int, dict]     # this run's identity index -> the matched source decoder's params
  record: dict                  # provenance: the source run's name, config hash, step, matches
  fresh: frozenset = frozenset()  # keystr paths under params (e.g. "['encoder']['bottleneck']
                                  # ['kernel']") that keep this run's own initialisation


def identity_names(cfg, workdir: str | None = None) -> list[str]:
  """The names identities are matched by: image folders' names (from the run's data report), or
  '<dataset>/family<data.seed>/<i>' for generated data."""
  if cfg.data.name == "folders" and workdir and os.path.exists(os.path.join(workdir, DATA_REPORT)):
    with open(os.path.join(workdir, DATA_REPORT)) as f:
      return list(json.load(f)["identities"])
  if cfg.data.name == "folders":
    from encdec_jax.data import folders
    return folders.identity_folders(cfg.data.root)
  return [f"{cfg.data.name}/family{cfg.data.seed}/{i}" for i in range(cfg.data.identities)]


def _shapes(tree) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in flat}


# The model fields besides the bottleneck that size weights: a source that differs in any of them
# does not fit, whatever its shapes.
_SHAPE_FIELDS = ("arch", "width", "resolution", "e_dims", "d_dims")


def _fits(a: tuple, b: tuple, k_src: int, k: int) -> bool:
  """Shape a (the source's) fits b (this run's) where they differ only in dimensions sized by the
  bottleneck: k_src there, k here."""
  return len(a) == len(b) and all(x == y or (x, y) == (k_src, k) for x, y in zip(a, b))


def _matched_shapes(got: dict, want, what: str, src_cfg, cfg) -> list[str]:
  """The leaves of `what` that start fresh (shapes sized by a different bottleneck); WarmStartError
  for any other difference."""
  a, b = _shapes(got), _shapes(want)
  k_src, k = src_cfg.model.bottleneck, cfg.model.bottleneck
  same_model = all(getattr(src_cfg.model, f) == getattr(cfg.model, f) for f in _SHAPE_FIELDS)
  fresh = []
  for key in sorted(set(a) | set(b)):
    if a.get(key) == b.get(key):
      continue
    if key in a and key in b and k_src != k and same_model and _fits(a[key], b[key], k_src, k):
      fresh.append(key)
      continue
    raise WarmStartError(
        f"config.train.init_from: the source run's {what} does not fit this run's: {what}{key} is "
        f"{a.get(key, 'missing')} there and {b.get(key, 'missing')} here (source: {src_cfg.model.arch}, "
        f"bottleneck {src_cfg.model.bottleneck}, {src_cfg.model.resolution} px; this run: "
        f"{cfg.model.arch}, bottleneck {cfg.model.bottleneck}, {cfg.model.resolution} px)")
  return fresh


@dataclasses.dataclass(frozen=True)
class _Run:
  """A source run as read from its workdir: config, config.json's bytes, latest params, step."""
  path: str
  cfg: Any
  raw: bytes
  params: dict   # numpy, under 'params'
  step: int


def _read(path: str) -> _Run:
  from encdec_jax import assemble
  cfg_path = os.path.join(path, CONFIG)
  if not os.path.isfile(cfg_path):
    raise WarmStartError(f"config.train.init_from={path!r}: no {CONFIG} there; it must be a run's "
                         "workdir (the folder a finished or stopped training wrote; `make sweep` and "
                         "`make recipe` train their stage 1 before the runs that start from it)")
  with open(cfg_path, "rb") as f:
    raw = f.read()
  src_cfg = assemble.checked_config(parse_config_json(raw, cfg_path))
  try:
    params, step = assemble.restore_params(assemble.assemble(src_cfg, "cpu"), path)
  except FileNotFoundError as e:
    raise WarmStartError(f"config.train.init_from={path!r}: {e}") from None
  return _Run(path, src_cfg, raw, jax.tree.map(np.asarray, jax.device_get(params))["params"], int(step))


def load(cfg) -> Source | None:
  """The source of `cfg.train.init_from` (None when it is ''), checked against the shapes of this
  run's params: WarmStartError names what is wrong."""
  return load_all([cfg])[0]


def load_all(cfgs: list) -> list[Source | None]:
  """`load` for each of several runs (a sweep's members): each source run is read once, each
  distinct model's shapes assembled once."""
  from encdec_jax import assemble
  runs: dict[str, _Run] = {}
  shapes: dict = {}
  out = []
  for cfg in cfgs:
    path = cfg.train.init_from
    if not path:
      out.append(None)
      continue
    if path not in runs:
      runs[path] = _read(path)
    if cfg.model not in shapes:
      shapes[cfg.model] = assemble.assemble(cfg, "cpu").abstract_params["params"]
    out.append(_match(cfg, runs[path], shapes[cfg.model]))
  return out


def _match(cfg, src: _Run, want: dict) -> Source:
  """The source run's weights that this run (`cfg`, params shapes `want`) takes."""
  src_cfg, params = src.cfg, src.params
  # Refused even where the shapes match ("none", "image" and "contrast_only" read 3 channels,
  # "local" and "contrast" 6): the encoder's first layer learnt other inputs.
  if src_cfg.model.input_norm != cfg.model.input_norm:
    raise WarmStartError(
        f"config.train.init_from={src.path!r}: the source run's encoder reads "
        f"model.input_norm={src_cfg.model.input_norm!r}, this run's {cfg.model.input_norm!r}; "
        "set this run's to the source's, or start from a source trained with this run's")
  fresh = [f"['encoder']{k}" for k in _matched_shapes(params["encoder"], want["encoder"], "encoder",
                                                      src_cfg, cfg)]
  src_names, names = identity_names(src_cfg, src.path), identity_names(cfg)
  decoders, matched = {}, {}
  for i, name in enumerate(names):
    if name in src_names:
      j = src_names.index(name)
      fresh += [f"['decoders_{i}']{k}" for k in _matched_shapes(
          params[f"decoders_{j}"], want[f"decoders_{i}"], f"decoder of {name!r}", src_cfg, cfg)]
      decoders[i], matched[name] = params[f"decoders_{j}"], j
  record = {"run": os.path.basename(os.path.abspath(src.path)), "config_sha256": config_hash(src.raw),
            "step": src.step, "encoder": True, "decoders": matched,
            "fresh_decoders": [n for n in names if n not in matched]}
  if fresh:  # only then: a run at the source's bottleneck keeps its record as before
    record["fresh_weights"] = fresh
  return Source(params["encoder"], decoders, record, frozenset(fresh))


def apply(params, source: Source | None):
  """One run's params (a numpy pytree {'params': {...}}) with the source's encoder and matched
  decoders put in, but for the leaves in `source.fresh`, which keep the run's own; the input is
  not changed."""
  if source is None:
    return params
  inner = dict(params["params"])

  def take(name, src):
    own = inner[name]
    def pick(path, mine, theirs):
      return np.array(mine if f"['{name}']{jax.tree_util.keystr(path)}" in source.fresh else theirs)
    inner[name] = jax.tree_util.tree_map_with_path(pick, own, src)

  take("encoder", source.encoder)
  for i, dec in source.decoders.items():
    take(f"decoders_{i}", dec)
  return {**params, "params": inner}


def describe(source: Source) -> str:
  """One line for the run's start."""
  r = source.record
  fresh = f"; fresh decoders: {', '.join(r['fresh_decoders'])}" if r["fresh_decoders"] else ""
  if r.get("fresh_weights"):
    fresh += (f"; {len(r['fresh_weights'])} weights sized by the bottleneck start fresh: "
              f"{', '.join(r['fresh_weights'])}")
  return (f"init_from: run {r['run']} (config {r['config_sha256']}, step {r['step']}): its encoder"
          f" and the decoders of {', '.join(r['decoders']) or 'no identity'}{fresh}")
