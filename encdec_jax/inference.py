"""Swapping images with a trained run: load a workdir, swap crops into an identity, blend, mark.

The hairstyle-visualizer use: a face crop of A decoded as identity B and, by default, converted:
pasted back into A's frame (or blended into the crop, where there is no frame) inside a face mask
(encdec_jax/convert.py), so that hair and background outside the face stay.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import jax
import numpy as np

from encdec_jax import codematch
from encdec_jax.models import INIT_COMPILER_OPTIONS  # XLA's backend optimisation off
from encdec_jax.pixels import to_unit_float


@dataclasses.dataclass
class Run:
  cfg: object        # ExperimentConfig
  model: object
  params: object
  step: int
  identities: list   # names, index = identity id
  name: str = ""     # the workdir's folder name
  config_hash: str = ""  # sha256 of its config.json, first 12 hex digits
  compiled: dict = dataclasses.field(default_factory=dict)
  workdir: str = ""  # where it was loaded from (never written into a swap: provenance() names it)
  init_from: dict | None = None  # the run its weights started from (workdir.INIT_FROM), if any

  def provenance(self) -> dict:
    """What a written swap says of the run that made it: its folder name and config hash, never
    a local path (photos get shared; a path can name the user and their folders); and, for a run
    started from another run's weights, that run's name, config hash and step."""
    out = {"run": self.name, "config_sha256": self.config_hash, "step": self.step}
    if self.init_from:
      out["init_from"] = {k: self.init_from[k] for k in ("run", "config_sha256", "step")}
    return out


def load_run(workdir: str, step: int | None = None) -> Run:
  """The run in WORKDIR at `step` (default: its latest checkpoint): its config.json, the model
  assembled from it (nothing compiled) and its params on one device."""
  from encdec_jax import assemble
  from encdec_jax.workdir import CONFIG, INIT_FROM, config_hash, parse_config_json
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir!r} is not a run's workdir")
  with open(path, "rb") as f:
    raw = f.read()
  cfg = assemble.checked_config(parse_config_json(raw, path))
  a = assemble.assemble(cfg)
  params, step = assemble.restore_params(a, workdir, step)
  names = [str(i) for i in range(cfg.data.identities)]
  from encdec_jax.data.loading import DATA_REPORT
  report = os.path.join(workdir, DATA_REPORT)
  if cfg.data.name == "folders" and os.path.exists(report):
    names = json.load(open(report))["identities"]
  init_from = None
  if os.path.exists(os.path.join(workdir, INIT_FROM)):
    with open(os.path.join(workdir, INIT_FROM)) as f:
      init_from = json.load(f)
  return Run(cfg, a.model, params, step, names, os.path.basename(os.path.abspath(workdir)),
             config_hash(raw), workdir=workdir, init_from=init_from)


def resolve_identity(run: Run, to: str) -> int:
  if to in run.identities:
    return run.identities.index(to)
  raise ValueError(f"--to={to!r} is not an identity of this run; valid: {run.identities}")


def colour_shifts(run: Run, trn: dict | None = None, reuse: bool = True):
  """The run's (N, N, 3) colour shifts (encdec_jax/calibration.py) if its config.eval.tone asks for them,
  else None: with `reuse`, the ones its evaluation of this checkpoint wrote (tone.json), else
  calibrated on `trn` (its training data, loaded when not given)."""
  if run.cfg.eval.tone == "none":
    return None
  from encdec_jax import calibration
  if reuse and run.workdir:
    from encdec_jax.workdir import read_tone
    saved, why = read_tone(run.workdir, run.step, run.cfg.data.identities, run.config_hash)
    if saved is not None:
      return saved
    if why:
      print(f"note: {why}; the colour shifts are computed again from the training faces", file=sys.stderr)
  if trn is None:
    from encdec_jax.data.loading import load_data
    trn, _ = load_data(run.cfg)
  from encdec_jax.decode import make_decode_all
  if "decode_all" not in run.compiled:  # compiled only when no stored shifts serve
    run.compiled["decode_all"] = make_decode_all(run.model)
  return calibration.calibrate_params(run.params, run.compiled["decode_all"], trn, run.cfg.data.identities,
                                      code=code_stats(run, trn), face_type=run.cfg.data.face_type)


def code_stats(run: Run, trn: dict | None = None):
  """The run's code statistics (encdec_jax/codematch.py) if its config.eval.code_match asks for
  them, else None: measured on `trn` (its training data, loaded when not given) once per Run."""
  if run.cfg.eval.code_match == "none":
    return None
  if "code_stats" not in run.compiled:
    if trn is None:
      from encdec_jax.data.loading import load_data
      trn, _ = load_data(run.cfg)
    run.compiled["code_stats"] = codematch.code_stats(run.params, codematch.make_encode(run.model), trn,
                                                      run.cfg.data.identities)
  return run.compiled["code_stats"]


def swap(run: Run, x_BxHxWx3: np.ndarray, to: int, blend: bool = True, masks=None, shift=None,
         frames=None, transforms=None, quick: bool = False, affine=None):
  """-> (swapped, mask used (B, H, W, 1) or None). With `blend`, the convert
  (encdec_jax/convert.py, decode.converted) of the decoder's output inside the learned mask if
  the model has one (times `masks` where given), else `masks` (the data's face masks), else the
  soft ellipse over the face of an aligned crop of the run's face type: pasted back into `frames`
  by `transforms` (frame pixels -> crop pixels) when given (the swap is then frame-sized), else
  blended into the input crops.
  Without `blend`, the decoder's output (crop-sized). `shift` (3,): a tone colour shift
  (encdec_jax/calibration.py) taken off the decoder's output first. `quick`, `affine`: `decode`'s."""
  from encdec_jax import convert
  from encdec_jax.decode import converted
  b, h, _, _ = x_BxHxWx3.shape
  rgb, learned = decode(run, x_BxHxWx3, to, quick, affine)
  if shift is not None:
    from encdec_jax.decode import take_off
    rgb = take_off(rgb, shift)
  if not blend:
    return rgb, None
  m = convert.choose_mask(learned, masks, h, b, run.cfg.data.face_type)
  shown = x_BxHxWx3 if transforms is None else frames
  return converted(shown, rgb, m, None, transforms, run.cfg.data.face_type), m


def decode(run: Run, x_BxHxWx3: np.ndarray, to: int, quick: bool = False, affine=None):
  """-> (the decoder `to`'s RGB output (B, H, W, 3), its learned mask (B, H, W, 1) or None), at
  the input's resolution. `quick`: compiled with XLA's backend optimisation off, for a few images
  (a swap grid's): the same numbers, a third of the compile time, twice the time per image.
  `affine`: (scale, offset) of the code the decoder reads (codematch.maps / codematch.into)."""
  from encdec_jax import models
  f = apply_swap_quick if quick else apply_swap
  y = models.to_resolution(f(run.model, run.params, x_BxHxWx3, to, affine), x_BxHxWx3.shape[1])  # dfaker: 2x
  return models.split_output(np.asarray(y))


def _apply_swap(model, params, x, to: int, affine=None):
  """Decoder `to`'s output for encoder(x). One compile per (model, target, shapes): runs of equal
  model configs (flax modules compare by their fields) share it, so a sweep's swap grid compiles
  once per architecture and bottleneck, not once per run."""
  return model.apply(params, x, to, affine, method="swap")


apply_swap = jax.jit(_apply_swap, static_argnums=(0, 3))
# The small Original at 32 px, 3 images, on 2 cores: compiled in 0.8 s against 2.0 s, 5.0 ms a
# call against 2.7 ms, the output bit for bit the same (BENCHMARKS.md, "Default sweep").
apply_swap_quick = jax.jit(_apply_swap, static_argnums=(0, 3), compiler_options=INIT_COMPILER_OPTIONS)


# The expressions a swap grid shows, per identity, where the data knows its faces' factors: the
# held-out face with the most closed eyes, then the widest smile, then the most open mouth.
GRID_EXPRESSIONS = ("blink", "smile", "mouth_open")


def grid_picks(test: dict, i: int, per_identity: int) -> list[int]:
  """Rows of `test` that a swap grid shows for identity i: with factors, the faces that show
  GRID_EXPRESSIONS most (distinct faces, then the first others), else the first per_identity."""
  rows = np.flatnonzero(test["identity"] == i)
  if "factors" not in test:
    return list(rows[:per_identity])
  from encdec_jax.data.render import FACTOR_NAMES
  picks = []
  for name in GRID_EXPRESSIONS[:per_identity]:
    order = rows[np.argsort(-test["factors"][rows, FACTOR_NAMES.index(name)], kind="stable")]
    picks.append(next(int(k) for k in order if k not in picks))
  picks += [int(k) for k in rows if k not in picks][:per_identity - len(picks)]
  return picks


# What a grid's rows must share with its first run: the same people (data set, family, identities)
# at the same crop. Augmentation, split sizes and the data's folder may differ.
GRID_SAME_DATA = ("name", "root", "seed", "identities", "resolution", "face_type")


def grid_mismatch(first, other) -> str | None:
  """Why a run with data config `other` cannot be a row of a grid of `first`'s faces, or None:
  the GRID_SAME_DATA fields that differ, "field (first's -> other's)"."""
  diff = [f"data.{f} ({getattr(first, f)!r} -> {getattr(other, f)!r})" for f in GRID_SAME_DATA
          if getattr(first, f) != getattr(other, f)]
  return "other data: " + ", ".join(diff) if diff else None


def swap_rows(workdirs: list[str], per_identity: int = 3):
  """(rows, labels, left_out) of a swap grid over runs: fixed held-out faces (the data of the
  first run that loads; on synthetic faces per identity the most closed eyes, the widest smile,
  the most open mouth: GRID_EXPRESSIONS), their true face swaps where the data has them, and
  each run's converted swap of them into the next identity, pasted back into the frame (one row
  per run); `left_out`: "run: why" for each run that could not be loaded or was trained on other
  people or crops (grid_mismatch). rows is None when no run loads (a report without its grid
  beats no report)."""
  from encdec_jax.data.loading import load_data
  left_out, loaded = [], {}
  for w in workdirs:
    try:
      loaded[w] = load_run(w)
    except Exception as e:  # noqa: BLE001 - a report without a run's row beats no report
      why = str(e).splitlines()[0] if str(e) else type(e).__name__
      left_out.append(f"{os.path.basename(os.path.abspath(w))}: {why}")
  if not loaded:
    return None, None, left_out
  first = next(iter(loaded.values()))
  trn, test = load_data(first.cfg)
  n = first.cfg.data.identities
  picks = [k for i in range(n) for k in grid_picks(test, i, per_identity)]
  x = to_unit_float(test["image"][picks])
  framed = "frame" in test
  frames = to_unit_float(test["frame"][picks]) if framed else None
  transforms = test["transform"][picks] if framed else None
  masks = test["mask"][picks] if "mask" in test else None
  ids = test["identity"][picks]
  target = (ids + 1) % n
  rows, labels = [x if frames is None else frames], ["input"]
  if "face_swaps" in test:
    rows.append(to_unit_float(test["face_swaps"][picks, target]))
    labels.append("true face swap")
  for w, run in loaded.items():
    why = grid_mismatch(first.cfg.data, run.cfg.data)
    if why:
      left_out.append(f"{os.path.basename(os.path.abspath(w))}: {why}")
      continue
    out = np.zeros_like(rows[0])
    same = trn if run.cfg.data == first.cfg.data else None
    shifts, code = colour_shifts(run, same), code_stats(run, same)
    for s in np.unique(ids):  # one batched call per source identity (its target is the next)
      sel = ids == s
      t = int(target[sel][0])
      affine = None
      if code is not None:
        scale, offset = codematch.maps(code, int(s))
        affine = (scale[t], offset[t])
      out[sel] = swap(run, x[sel], t, masks=None if masks is None else masks[sel],
                      shift=None if shifts is None else shifts[int(s), t],
                      frames=None if frames is None else frames[sel],
                      transforms=None if transforms is None else transforms[sel], quick=True,
                      affine=affine)[0]
    rows.append(out)
    labels.append(os.path.basename(os.path.abspath(w)))
  return rows, labels, left_out
