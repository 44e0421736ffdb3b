"""Evaluation on held-out images: swaps as a user sees them, against the true face swap.

For every identity i and every decoder j, `decode_all` gives decoder_j(encoder(x_i)) (the *raw*
output) of the aligned crop x_i. What a user sees is the *converted* swap (encdec_jax/convert.py):
that output pasted back into x_i's frame inside a face mask, so hair and background stay the
frame's. The synthetic data stores what a perfect convert would produce, the *true face swap*
(x_i's frame with j's face), and its mask; pixel metrics compare whole frames, and the judges
read the aligned crop of the converted frame (judges.judged_view), as they read the data. Data
without frames (a folder of crops) converts and is judged in the crop itself.

Scalars are named `eval/<metric>` (means) and `eval/<metric>/<i>` or `/<i>to<j>` (parts); what
each metric means is in encdec_jax/metrics.py. `evaluate` is built from one function per family
of metrics, each returning its scores for one identity or pair: a float, or an array of per-image
scores whose mean is the score and whose bootstrap standard error over the held-out images
(encdec_jax/bootstrap.py) is reported beside the mean as `eval/<metric>_se`.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from encdec_jax import bootstrap, codematch, judges as judges_lib
from encdec_jax.data.render import POSE_EXPRESSION
from encdec_jax.decode import BATCH, calibrated, converted, decode_batched
from encdec_jax.image_stats import (blur, mean_pair_metrics, pair_metrics, sharpness, tone_gap,
                                    tone_matched, variation)
from encdec_jax.pixels import to_unit_float


@dataclasses.dataclass
class Source:
  """Identity i's held-out faces and what the data stores about them."""
  i: int
  x: np.ndarray                    # (B, S, S, 3) in [0, 1]: the aligned crops the model sees
  data_masks: np.ndarray | None    # (B, S, S, C) uint8 (face, eyes, mouth) of the crops, where the data has them
  judge_mask: np.ndarray | None    # the crops' face masks the judges read through
  factors: np.ndarray | None       # (B, 7) true pose and expression factors
  landmarks: np.ndarray | None     # (B, 4, 2) x_i's own landmarks (crop fractions)
  frame: np.ndarray | None = None  # (B, F, F, 3) in [0, 1]: the frames the crops were cut from
  frame_masks: np.ndarray | None = None  # (B, F, F, C) uint8: the frames' masks
  transforms: np.ndarray | None = None   # (B, 2, 3) frame pixels -> crop pixels
  face_type: str | None = None     # the crops' face type: its soft ellipse is the convert's mask
                                   # where there is neither a learned nor a data mask

  @functools.cached_property
  def face(self):
    """(B, S, S, 1) in [0, 1]: the crops' face mask, where the data has one."""
    return None if self.data_masks is None else to_unit_float(self.data_masks[..., :1])

  @property
  def shown(self) -> np.ndarray:
    """What a swap is pasted into and compared in: the frames, else the crops."""
    return self.x if self.frame is None else self.frame

  @functools.cached_property
  def shown_face(self):
    """(B, H, W, 1): the face mask of `shown`, where the data has one."""
    if self.frame is None:
      return self.face
    return None if self.frame_masks is None else to_unit_float(self.frame_masks[..., :1])

  def convert(self, rgb, learned=None, into=None) -> np.ndarray:
    """Decoded crops (B, S, S, 3) converted as a user sees them (decode.converted): pasted back
    into `into` (images like `shown`, default `shown`) by the crops' transforms, or blended into
    it where there are no frames."""
    return converted(self.shown if into is None else into, rgb, learned, self.data_masks, self.transforms,
                     self.face_type)

  def judged(self, shown) -> np.ndarray:
    """What the judges read of images shaped like `shown`: their aligned crops (as the data)."""
    if self.frame is None:
      return shown
    from encdec_jax import align
    return align.crops(shown, self.transforms, self.x.shape[1])


def source(test: dict, i: int, judged: bool, face_type: str | None = None) -> tuple[Source, np.ndarray]:
  """(identity i's Source, the boolean selection of its rows in `test`); `face_type`: the
  crops' (config.data.face_type)."""
  sel = test["identity"] == i
  x = to_unit_float(test["image"][sel])
  data_masks = test["mask"][sel] if "mask" in test else None
  judge_mask = None
  if judged:  # inside the source's face mask, as the judges were fitted
    judge_mask = judges_lib.face_masks({"image": x, **({} if data_masks is None else {"mask": data_masks})})
  framed = "frame" in test
  return Source(i, x, data_masks, judge_mask,
                test["factors"][sel] if judged and "factors" in test else None,
                test["landmarks"][sel] if "landmarks" in test else None,
                to_unit_float(test["frame"][sel]) if framed else None,
                test["frame_mask"][sel] if framed and "frame_mask" in test else None,
                test["transform"][sel] if framed else None, face_type), sel


def reconstruction_scores(s: Source, raw, conv, truth_known: bool) -> dict[str, float]:
  """Decoder i on x_i: converted against x_i's frame, raw against the crop, inside the face (per
  image), and its variation."""
  out = {f"recon_{k}": v for k, v in _per_image(conv, s.shown).items()}
  out["raw_recon_mae"] = _per_image(raw, s.x)["mae"]
  if s.shown_face is not None:
    out["recon_face_mae"] = _per_image(conv, s.shown, s.shown_face)["mae"]
  if s.face is not None and truth_known:
    out["recon_variation"] = variation(raw, s.x, s.face.mean(0))
  return out


def reconstruction_judged(judges, s: Source, conv) -> dict[str, float]:
  """The judges on A -> A at x_i's own landmarks: what the model can draw at all."""
  scores = judges_lib.swap_samples(judges, s.judged(conv), s.judge_mask, s.landmarks, s.i, s.i, s.factors)
  return {"recon_" + k.replace("id_transfer", "id_accuracy"): v for k, v in scores.items() if k != "id_leak"}


def swap_scores(s: Source, conv, raw, truth, truth_mask, full_head) -> dict[str, float]:
  """A converted swap against the true face swap (whole frame and face region), the bar of
  copying the input, and the raw output against j's true full-head rendering (per image, the bar
  as a mean). conv, truth, truth_mask: like `s.shown`; raw, full_head: crops."""
  region = np.maximum(s.shown_face, truth_mask)
  out = {f"swap_{k}": v for k, v in _per_image(conv, truth).items()}
  out.update({f"swap_face_{k}": v for k, v in _per_image(conv, truth, region).items()})
  out["swap_mae_input"] = mean_pair_metrics(s.shown, truth)["mae"]
  out["swap_face_mae_input"] = mean_pair_metrics(s.shown, truth, region)["mae"]
  out.update({f"raw_swap_{k}": v for k, v in _per_image(raw, full_head).items()})
  out["swap_variation"] = variation(raw, full_head, s.judged(truth_mask).mean(0))
  return out


def reference_scores(judges, s: Source, j: int, truth, truth_mask, full_head, lms, mean_face,
                     ideal=None) -> dict[str, float]:
  """What the swap i -> j is measured against, none of it the model's (means): converting j's
  true full-head rendering (`swap_face_mae_oracle`); with judges, the judges on the true face
  swaps (what a perfect swap shows here), on their crops pasted back into the source's frame as a
  decoded crop is (`_pasted`: the true swap's crop through this convert, the frame's head outline
  and the crop's edge included), on `ideal` (crops: j's own aligned crops at the sources'
  factors, what a perfect decoder j draws) converted as the swap is (`_ideal`), and on j's mean
  face converted (`_mean_face`, the bar); the ideal's signed error too (`attr_bias_ideal/`: how
  much of a swap's signed error per direction a perfect decoder shows), and how its readings
  follow the sources' (`attr_corr_ideal/`). The same for
  every run judged on these faces by these judges (`evaluate`'s `references` keeps them)."""
  region = np.maximum(s.shown_face, truth_mask)
  out = {"swap_face_mae_oracle": mean_pair_metrics(s.convert(full_head), truth, region)["mae"]}
  if judges is None:
    return out
  score = lambda img: judges_lib.swap_scores(judges, s.judged(img), s.judge_mask, lms, s.i, j, s.factors)
  refs = (("truth", truth), ("pasted", s.convert(s.judged(truth))))
  for name, img in refs + ((("ideal", s.convert(ideal)),) if ideal is not None else ()):
    for k, v in score(img).items():
      if k.startswith("attr_err/"):
        out[k.replace("attr_err/", f"attr_err_{name}/")] = v
      elif k.startswith(("attr_bias/", "attr_corr/")) and name == "ideal":  # a perfect swap's
        head, _, factor = k.partition("/")
        out[f"{head}_ideal/{factor}"] = v
      elif k in ("id_transfer", "attr_mae", "expr_mae", "pose_mae"):
        out[f"{k}_{name}"] = v
  flat = s.convert(np.broadcast_to(mean_face, s.x.shape))
  out.update({f"{k}_mean_face": v for k, v in score(flat).items() if k in ("attr_mae", "id_transfer")})
  return out


def swap_judged(judges, s: Source, j: int, conv, uncalibrated, truth, tone_region, lms,
                sigma) -> dict[str, float]:
  """The judges on a converted swap i -> j; beside them, where given: the uncalibrated swap, the
  swap with its tone gap matched and the true swap blurred to the decoder's sharpness (what blur
  alone does); what does not depend on the model is `reference_scores`'. The swap's own scores
  per image, the others as means. Images like `s.shown`; the judges read s.judged."""
  score = lambda img, factors=s.factors: judges_lib.swap_scores(
      judges, s.judged(img), s.judge_mask, lms, s.i, j, factors)
  out = dict(judges_lib.swap_samples(judges, s.judged(conv), s.judge_mask, lms, s.i, j, s.factors))
  out.update(judges_lib.factor_rows(judges, out, s.factors))  # each bootstrapped as a set
  if uncalibrated is not None:
    out.update({f"{k}_uncalibrated": v for k, v in score(uncalibrated).items()
                if k in ("attr_mae", "id_transfer")})
  if truth is not None:
    out["id_transfer_tone_matched"] = score(tone_matched(conv, truth, tone_region), None)["id_transfer"]
  if sigma is not None:  # converted: inside the face mask, the frame stays sharp
    blurred = score(s.convert(blur(s.judged(truth), sigma), into=truth))
    out.update({f"blur_{k}": blurred[k] for k in ("attr_mae", "id_transfer") if k in blurred})
  return out


def judge_references(judges) -> dict[str, float]:
  """The judges' own scores on real images: what "perfect" looks like, and guessing the mean."""
  out = {"eval/judge_accuracy": judges.accuracy, "eval/judge_panel": float(judges.panel_size)}
  if judges.attr_floors is not None:
    for name, sel in judges_lib.scored_factors(judges.readable).items():  # attr, expr, pose
      out[f"eval/{name}_floor"] = float(judges.attr_floors[sel].mean())
      out[f"eval/{name}_guess"] = float(judges.attr_guess[sel].mean())
    for n, f, g in zip(POSE_EXPRESSION, judges.attr_floors, judges.attr_guess):
      out[f"eval/attr_floor/{n}"] = float(f)
      out[f"eval/attr_guess/{n}"] = float(g)
  return out


def _per_image(pred, target, region=None) -> dict[str, np.ndarray]:
  """image_stats.pair_metrics as numpy arrays (one score per image)."""
  return {k: np.asarray(v) for k, v in pair_metrics(pred, target, region).items()}


class _Scores:
  """Parts (`eval/<name>/<part>`), the means over parts (`eval/<name>`) and, for scores given per
  image or as a statistic of a set of images, the bootstrap standard error of that mean
  (`eval/<name>_se`)."""

  def __init__(self):
    self.parts: dict[str, float] = {}
    self.values: dict[str, list] = {}
    self.samples: dict[str, list] = {}
    self.sets: dict[str, list] = {}

  def add(self, part, scores: dict, signed: tuple[str, ...] = ()):
    """Per-factor errors only enter the means; `signed` names are kept signed per part and
    averaged by their size; an array is per-image scores (its mean is the part's score); a
    bootstrap.SetStatistic is a statistic of the part's images (its value is the part's score)."""
    for name, v in scores.items():
      if isinstance(v, np.ndarray):
        self.samples.setdefault(name, []).append(v)
        v = float(np.mean(v))
      elif isinstance(v, bootstrap.SetStatistic):
        self.sets.setdefault(name, []).append(v)
        v = v.value()
      if "attr_err/" not in name:
        self.parts[f"eval/{name}/{part}"] = v
      self.values.setdefault(name, []).append(abs(v) if name in signed else v)

  def per_image(self) -> dict[str, list]:
    """name -> [per-image scores of each part], for the names every part gave per image."""
    return {k: list(v) for k, v in self.samples.items() if len(v) == len(self.values[k])}

  def result(self) -> dict[str, float]:
    out = {**self.parts, **{f"eval/{k}": float(np.mean(v)) for k, v in self.values.items()}}
    out.update({f"eval/{k}_se": bootstrap.standard_error(v) for k, v in self.per_image().items()})
    out.update({f"eval/{k}_se": bootstrap.standard_error([x.rows for x in v], statistic=v[0].statistic)
                for k, v in self.sets.items() if len(v) == len(self.values[k])})
    return out


def evaluate(params, decode_all, test: dict, num_identities: int, batch: int = BATCH,
             judges=None, probes=None, shifts=None, samples: dict | None = None,
             face_type: str | None = None, ideal=None, references: dict | None = None,
             code=None) -> dict[str, float]:
  """Scalars for the held-out split `test` (arrays with 'image', 'identity', and where the data
  has them 'mask', 'swaps', 'face_swaps', 'face_swap_masks', 'face_swap_landmarks' and
  'factors'). On image folders (no true swaps) reconstruction and, with judges, identity
  transfer and leakage are reported. `probes`: params -> the latent probes' scalars
  (encdec_jax/probes.py), added when given. `shifts`: the (N, N, 3) colour calibration of
  encdec_jax/calibration.py, taken off every swap before it is converted and scored; the shifts
  and the uncalibrated swaps' tone gap, identity transfer and pose/expression error are reported
  beside. `samples`: a dict filled with the per-image scores, name -> [one array per identity or
  pair, in the order of the parts], for comparisons of runs on the same faces. `face_type`: the
  crops' (config.data.face_type), whose soft ellipse converts where no mask is learned or stored.
  `ideal`: (j, the sources' factors (B, F)) -> j's own aligned crops at them
  (data.loading.own_crops_fn), judged beside the swaps as `_ideal` where the truth is known.
  `references`: a dict the caller keeps for one `test`, `judges`, `ideal` and `face_type` (the
  members of a sweep, every evaluation of a run): `reference_scores` are computed in the first
  call and read from it in the next ones (they do not depend on params). `code`: the code
  statistics (encdec_jax/codematch.py, config.eval.code_match) every swap's code is matched
  with before it is decoded."""
  scores = _Scores()
  truth_known = "face_swaps" in test
  judged = judges is not None
  mean_faces = ([to_unit_float(test["image"][test["identity"] == j]).mean(0) for j in range(num_identities)]
                if truth_known and judged else None)
  for i in range(num_identities):
    s, sel = source(test, i, judged, face_type)
    rgb, learned = decode_batched(params, decode_all, s.x, batch,
                                  maps=None if code is None else codematch.maps(code, i))
    uncalibrated = rgb
    if shifts is not None:
      rgb = calibrated(rgb, shifts[i], i)
    sigma = None
    if truth_known and judged and s.data_masks is not None:  # decoder i's sharpness
      sigma = sharpness(rgb[i], s.x, s.face)
      scores.add(i, {"blur_sigma": sigma})
    for j in range(num_identities):
      learned_j = None if learned is None else learned[j]
      conv = s.convert(rgb[j], learned_j)
      if j == i:
        scores.add(i, reconstruction_scores(s, rgb[i], conv, truth_known))
        if judged:
          scores.add(i, reconstruction_judged(judges, s, conv))
        continue
      pair = f"{i}to{j}"
      raw_conv = None if shifts is None else s.convert(uncalibrated[j], learned_j)
      truth = tone_region = None
      if truth_known:
        truth = to_unit_float(test["face_swaps"][sel, j])
        truth_mask = to_unit_float(test["face_swap_masks"][sel, j][..., :1])
        scores.add(pair, swap_scores(s, conv, rgb[j], truth, truth_mask, to_unit_float(test["swaps"][sel, j])))
        tone_region = np.minimum(s.shown_face, truth_mask)
        gaps = {"swap_tone_gap": tone_gap(conv, truth, tone_region)}
        if shifts is not None:
          gaps["swap_tone_gap_uncalibrated"] = tone_gap(raw_conv, truth, tone_region)
        scores.add(pair, gaps, signed=tuple(gaps))
      if shifts is not None:
        scores.add(pair, {"tone_shift": float(np.mean(shifts[i, j]))}, signed=("tone_shift",))
      lms = test["face_swap_landmarks"][sel, j] if truth_known and judged else None
      if truth_known:
        key = (id(test), id(judges), i, j)
        refs = None if references is None else references.get(key)
        if refs is None:
          own = None if ideal is None or not judged else ideal(j, test["factors"][sel])
          refs = reference_scores(judges, s, j, truth, truth_mask, to_unit_float(test["swaps"][sel, j]),
                                  lms, None if mean_faces is None else mean_faces[j], own)
          if references is not None:
            references[key] = refs
        scores.add(pair, refs)
      if judged:
        scores.add(pair, swap_judged(judges, s, j, conv, raw_conv, truth, tone_region, lms, sigma))
  out = scores.result()
  if samples is not None:
    samples.update(scores.per_image())
  if probes is not None:
    out.update(probes(params))
  if judged:
    out.update(judge_references(judges))
  return out
