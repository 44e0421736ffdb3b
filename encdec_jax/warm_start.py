"""Starting a run from another run's weights (`config.train.init_from`): DeepFaceLab's pretrain
mode, where a shared encoder trained on many identities is fine-tuned on a pair.

The new run takes the source run's latest checkpoint: its encoder whole, and the decoder of every
identity the two runs share, by name (image folders: the folder's name; generated data: the dataset,
its family `data.seed` and the index, since identity i of a family is the same face whatever the
number of identities). Every other decoder, the optimizer's moments and the step start fresh.
Only a run's first start reads the source: a resumed run continues from its own checkpoint.

    source = load(cfg)                 # before any data is loaded: bad paths and shapes fail here
    params = apply(params, source)     # numpy params of one run, encoder and matched decoders
"""
from __future__ import annotations

import dataclasses
import json
import os

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


def _check_same_shapes(got: dict, want, what: str, src_cfg, cfg) -> None:
  a, b = _shapes(got), _shapes(want)
  for k in sorted(set(a) | set(b)):
    if a.get(k) != b.get(k):
      raise WarmStartError(
          f"config.train.init_from: the source run's {what} does not fit this run's: {what}{k} is "
          f"{a.get(k, 'missing')} there and {b.get(k, 'missing')} here (source: {src_cfg.model.arch}, "
          f"bottleneck {src_cfg.model.bottleneck}, {src_cfg.model.resolution} px; this run: "
          f"{cfg.model.arch}, bottleneck {cfg.model.bottleneck}, {cfg.model.resolution} px)")


def load(cfg, abstract_params=None) -> Source | None:
  """The source of `cfg.train.init_from` (None when it is ''), checked against this run's params
  shapes (`abstract_params`, default: assembled from `cfg`): WarmStartError names what is wrong."""
  path = cfg.train.init_from
  if not path:
    return None
  from encdec_jax import assemble
  cfg_path = os.path.join(path, CONFIG)
  if not os.path.isfile(cfg_path):
    raise WarmStartError(f"config.train.init_from={path!r}: no {CONFIG} there; it must be a run's "
                         "workdir (the folder a finished or stopped training wrote)")
  with open(cfg_path, "rb") as f:
    raw = f.read()
  src_cfg = assemble.checked_config(parse_config_json(raw, cfg_path))
  try:
    params, step = assemble.restore_params(assemble.assemble(src_cfg, "cpu"), path)
  except FileNotFoundError as e:
    raise WarmStartError(f"config.train.init_from={path!r}: {e}") from None
  params = jax.tree.map(np.asarray, jax.device_get(params))["params"]
  want = (abstract_params if abstract_params is not None
          else assemble.assemble(cfg, "cpu").abstract_params)["params"]
  _check_same_shapes(params["encoder"], want["encoder"], "encoder", src_cfg, cfg)
  src_names, names = identity_names(src_cfg, path), identity_names(cfg)
  decoders, matched = {}, {}
  for i, name in enumerate(names):
    if name in src_names:
      j = src_names.index(name)
      _check_same_shapes(params[f"decoders_{j}"], want[f"decoders_{i}"], f"decoder of {name!r}",
                         src_cfg, cfg)
      decoders[i], matched[name] = params[f"decoders_{j}"], j
  record = {"run": os.path.basename(os.path.abspath(path)), "config_sha256": config_hash(raw),
            "step": int(step), "encoder": True, "decoders": matched,
            "fresh_decoders": [n for n in names if n not in matched]}
  return Source(params["encoder"], decoders, record)


def apply(params, source: Source | None):
  """One run's params (a numpy pytree {'params': {...}}) with the source's encoder and matched
  decoders put in; the input is not changed."""
  if source is None:
    return params
  inner = dict(params["params"])
  inner["encoder"] = jax.tree.map(np.array, source.encoder)
  for i, dec in source.decoders.items():
    inner[f"decoders_{i}"] = jax.tree.map(np.array, dec)
  return {**params, "params": inner}


def describe(source: Source) -> str:
  """One line for the run's start."""
  r = source.record
  fresh = f"; fresh decoders: {', '.join(r['fresh_decoders'])}" if r["fresh_decoders"] else ""
  return (f"init_from: run {r['run']} (config {r['config_sha256']}, step {r['step']}): its encoder"
          f" and the decoders of {', '.join(r['decoders']) or 'no identity'}{fresh}")
