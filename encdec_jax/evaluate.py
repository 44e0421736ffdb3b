"""Evaluation on held-out images: swaps as a user sees them, against the true face swap.

For every identity i and every decoder j, `decode_all` gives decoder_j(encoder(x_i)) (the *raw*
output). What a user sees is the *converted* swap (encdec_jax/convert.py): that output blended
into x_i inside a face mask, so hair and background stay x_i's. The synthetic data stores what a
perfect convert would produce, the *true face swap* (x_i's frame with j's face), and its mask.

Scalars are named `eval/<metric>` (means) and `eval/<metric>/<i>` or `/<i>to<j>` (parts):
  swap_{mae,ssim,psnr}         converted swap against the true face swap, whole frame
  swap_face_{mae,ssim,psnr}    the same inside the face region (the union of x_i's face mask and
                               the true face swap's): where a swap can differ from its frame
  swap_mae_input, swap_face_mae_input
                               what copying the input scores (the bar to beat)
  swap_face_mae_oracle         what converting j's true full-head rendering scores: a decoder that
                               draws j exactly as trained (its own head size and hairline) gets here
  raw_swap_{mae,ssim,psnr}     the raw decoder output against j's full-head rendering
  swap_variation, recon_variation
                               how much the raw decoder output varies from input to input, inside
                               the face, over how much the truth does (j's renderings; x_i for the
                               reconstruction): near 1, it draws what it is given; near 0, it paints
                               one face whatever the input (measured: 0.06-0.11 for latent_match runs,
                               whose swaps score what the mean face scores; 0.42-0.72 without it)
  recon_{mae,ssim,psnr}, recon_face_mae, raw_recon_mae
                               decoder i on x_i: converted, its face region, raw
  recon_id_accuracy, recon_attr_mae, recon_attr_err/<factor>
                               the judges on the converted reconstructions (i -> i, at x_i's own
                               landmarks): a model that loses the smile here cannot swap it
  blur_sigma, blur_attr_mae, blur_id_transfer
                               what blur alone does to the judges: the decoder's sharpness as the
                               Gaussian sigma (px, of BLUR_SIGMAS) whose blur of x_i is nearest its
                               raw reconstruction inside the face, and the judges on the true face
                               swaps blurred by it inside the face mask (converted, as a swap). Near the judge's floor: blur does not explain a
                               failing swap; near or past guessing: the judge cannot tell this blur
                               from a change of expression, and attr_mae says little
With judges (encdec_jax/judges.py), on the converted swaps inside x_i's own face mask (so the
mask's outline is the frame's, never the target's) and, for pose and expression, at the true
face swap's landmarks:
`id_transfer` (share recognised as j), `id_leak` (still recognised as i), `attr_mae` (pose and
expression error against x_i's true factors over the factors the judge can read, standardised),
`attr_err/<factor>`, beside the judges' own scores on real images (`judge_accuracy`,
`attr_mae_floor`, `attr_floor/<factor>`) and what guessing the mean scores (`attr_mae_guess`).
  id_transfer_truth            the identity judge on the true face swaps themselves (inside x_i's
                               mask): the most a swap's id_transfer can show. 1.00 on two identities
                               of family 0; with four identities 0.28-1.00 per pair (the judge
                               mistakes some faces in another's frame), so read id_transfer against it
  attr_mae_mean_face, id_transfer_mean_face
                               what a decoder that ignores its input scores: j's mean held-out
                               face converted into x_i (inside x_i's face mask). The mask's outline
                               is x_i's, so the judge reads x_i's pose from it: this, not guessing
                               the mean, is the bar a swap's attr_mae must beat to show that the
                               decoder drew anything of the source (measured: 0.55 against
                               guessing's 0.85, every expression factor near guessing)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax import convert as convert_lib
from encdec_jax import images as image_lib
from encdec_jax import models
from encdec_jax.losses.common import weighted_mean
from encdec_jax.losses.structural import _ssim_cs_maps


def make_decode_all(model):
  """jit(params, x_BxHxWxC) -> (N, B, H, W, 3 or 4), x decoded by every identity's decoder (RGB,
  plus the learned mask where the model has one), at the input's resolution: an architecture
  that outputs more (dfaker, 2x) is resized down with an antialiased bilinear filter, so metrics
  compare every architecture at the data's resolution."""
  def f(params, x):
    return models.to_resolution(model.apply(params, x, method="decode_all"), x.shape[1])
  return jax.jit(f)


@jax.jit
def _pair_metrics(pred, target, region=None):
  """Per-example MAE, SSIM and PSNR (peak 1) of images in [0, 1]; with `region` (B, H, W, 1) in
  [0, 1], weighted by it (SSIM: its windows weighted by the region at their centres)."""
  pred, target = jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)
  err = pred - target
  mse = weighted_mean(err * err, region)
  window = min(11, pred.shape[1], pred.shape[2])
  s, _ = _ssim_cs_maps(pred, target, window, 1.5)
  o = (window - 1) // 2
  r = None if region is None else region[:, o:o + s.shape[1], o:o + s.shape[2]]
  return {"mae": weighted_mean(jnp.abs(err), region), "ssim": weighted_mean(s, r),
          "psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))}


def _u8(a) -> np.ndarray:
  return np.asarray(a, np.float32) / 255.0


def decode_batched(params, decode_all, x, batch: int = 64):
  """(rgb (N, n, H, W, 3), learned mask (N, n, H, W, 1) or None) for all of x."""
  y = np.concatenate([np.asarray(decode_all(params, x[k:k + batch])) for k in range(0, len(x), batch)],
                     axis=1)
  rgb, mask = models.split_output(y)
  return rgb, mask


def converted(x, rgb_j, learned_j, data_masks):
  """The convert of one decoder's outputs for inputs x: learned mask, else the data's, else the
  soft ellipse."""
  m = convert_lib.choose_mask(learned_j, data_masks, x.shape[1], len(x))
  return convert_lib.convert(x, rgb_j, m)


BLUR_SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # px, at the data's resolution


def blur(x_BxHxWxC, sigma: float) -> np.ndarray:
  """Gaussian blur over H and W (separable, truncated at 4 sigma, edges repeated)."""
  x = np.asarray(x_BxHxWxC, np.float32)
  if sigma == 0:
    return x
  r = int(4 * sigma + 0.5)
  t = np.arange(-r, r + 1)
  w = np.exp(-0.5 * (t / sigma) ** 2)
  w = (w / w.sum()).astype(np.float32)
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (r, r)
    xp, n = np.pad(x, pad, mode="edge"), x.shape[axis]
    x = sum(wk * np.take(xp, np.arange(k, k + n), axis=axis) for k, wk in enumerate(w))
  return x


def sharpness(raw_recon, x, face) -> float:
  """The sigma of BLUR_SIGMAS whose blur of x is nearest (face-weighted MAE) the decoder's raw
  reconstruction of x: how sharp the decoder draws."""
  errs = [float(np.mean(_pair_metrics(raw_recon, blur(x, s), face)["mae"])) for s in BLUR_SIGMAS]
  return BLUR_SIGMAS[int(np.argmin(errs))]


def _mean(v):
  return float(np.mean(v))


def variation(out, truth, region) -> float:
  """The per-pixel standard deviation over the batch of `out`, summed inside `region` (H, W, 1)
  in [0, 1], over the same for `truth`: 1 when the outputs vary as the truth does, 0 when they
  are one image."""
  sd = lambda a: (np.asarray(a, np.float32).std(0) * region).sum()
  return float(sd(out) / max(sd(truth), 1e-12))


def _colour_gap(swaps, truth, region) -> np.ndarray:
  """(C,): the swaps' mean colour minus the true swaps' inside `region` (B, H, W, 1)."""
  from encdec_jax.losses.swap import mean_colour  # the swap_tone loss's own measure
  return np.asarray(mean_colour(swaps, region) - mean_colour(truth, region), np.float32)


def tone_gap(swaps, truth, region) -> float:
  """The swaps' mean colour minus the true swaps' inside `region` (B, H, W, 1), averaged over
  channels: > 0 where the swaps are lighter than the target's skin. A decoder that never met the
  source's codes paints them in its own guess of the light (BENCHMARKS.md "Recipe, round 4")."""
  return float(_colour_gap(swaps, truth, region).mean())


def tone_matched(swaps, truth, region) -> np.ndarray:
  """The swaps with the pair's mean colour gap to the true swaps (per channel, inside `region`)
  taken off inside the region: one constant shift for all of them. Judged, it says how much of a
  failed identity transfer is the tone alone (a diagnosis: it uses the truth)."""
  gap = _colour_gap(swaps, truth, region)
  return np.clip(np.asarray(swaps, np.float32) - gap * region, 0.0, 1.0)


def evaluate(params, decode_all, test: dict, num_identities: int, batch: int = 64,
             judges=None, probes=None, tone=None) -> dict[str, float]:
  """Scalars for the held-out split `test` (arrays with 'image', 'identity', and where the data
  has them 'mask', 'swaps', 'face_swaps', 'face_swap_masks', 'face_swap_landmarks' and
  'factors'). On image folders (no true swaps) reconstruction and, with judges, identity
  transfer and leakage are reported. `probes`: params -> the latent probes' scalars
  (encdec_jax/probes.py), added when given. `tone`: the (N, N, 3) colour shifts of
  encdec_jax/tone.py, taken off every swap before it is converted and scored; the shifts and the
  uncalibrated swaps' tone gap, identity transfer and pose/expression error are reported beside."""
  from encdec_jax import judges as judges_lib
  out: dict[str, float] = {}
  acc: dict[str, list] = {}

  def put(name, pair, value):  # a part (per identity or pair; per-factor errors only as means)
    if "attr_err/" not in name:
      out[f"eval/{name}/{pair}"] = value
    acc.setdefault(name, []).append(value)

  truth_known = "face_swaps" in test
  mean_faces = ([_u8(test["image"][test["identity"] == j]).mean(0) for j in range(num_identities)]
                if truth_known and judges is not None else None)
  for i in range(num_identities):
    sel = test["identity"] == i
    x = _u8(test["image"][sel])
    data_masks = test["mask"][sel] if "mask" in test else None
    rgb, learned = decode_batched(params, decode_all, x, batch)
    uncalibrated = rgb
    if tone is not None:
      rgb = _calibrated(rgb, tone[i], i)
    judge_mask = factors = None
    if judges is not None:  # inside the source's face mask, as the judges were fitted
      judge_mask = judges_lib.face_masks({"image": x, **({} if data_masks is None else {"mask": data_masks})})
      factors = test["factors"][sel] if "factors" in test else None
    sigma = None
    if truth_known and judges is not None and data_masks is not None:  # decoder i's sharpness
      sigma = sharpness(rgb[i], x, _u8(data_masks[..., :1]))
      put("blur_sigma", i, sigma)
    for j in range(num_identities):
      conv = converted(x, rgb[j], None if learned is None else learned[j], data_masks)
      if j == i:
        region = None if data_masks is None else _u8(data_masks[..., :1])
        for k, v in _pair_metrics(conv, x).items():
          put(f"recon_{k}", i, _mean(v))
        put("raw_recon_mae", i, _mean(_pair_metrics(rgb[j], x)["mae"]))
        if region is not None:
          put("recon_face_mae", i, _mean(_pair_metrics(conv, x, region)["mae"]))
          if truth_known:
            put("recon_variation", i, variation(rgb[j], x, region.mean(0)))
        if judges is not None:  # the judges on A -> A: what the model can draw at all
          lms = test["landmarks"][sel] if "landmarks" in test else None
          for k, v in judges_lib.swap_scores(judges, conv, judge_mask, lms, i, i, factors).items():
            if k != "id_leak":
              put("recon_" + k.replace("id_transfer", "id_accuracy"), i, v)
        continue
      pair = f"{i}to{j}"
      raw_conv = (None if tone is None else  # the same swaps without the calibration
                  converted(x, uncalibrated[j], None if learned is None else learned[j], data_masks))
      if truth_known:
        truth = _u8(test["face_swaps"][sel, j])
        truth_mask = _u8(test["face_swap_masks"][sel, j][..., :1])
        region = np.maximum(_u8(data_masks[..., :1]), truth_mask)
        for k, v in _pair_metrics(conv, truth).items():
          put(f"swap_{k}", pair, _mean(v))
        for k, v in _pair_metrics(conv, truth, region).items():
          put(f"swap_face_{k}", pair, _mean(v))
        put("swap_mae_input", pair, _mean(_pair_metrics(x, truth)["mae"]))
        put("swap_face_mae_input", pair, _mean(_pair_metrics(x, truth, region)["mae"]))
        oracle = converted(x, _u8(test["swaps"][sel, j]), None, data_masks)
        put("swap_face_mae_oracle", pair, _mean(_pair_metrics(oracle, truth, region)["mae"]))
        for k, v in _pair_metrics(rgb[j], _u8(test["swaps"][sel, j])).items():
          put(f"raw_swap_{k}", pair, _mean(v))
        put("swap_variation", pair, variation(rgb[j], _u8(test["swaps"][sel, j]), truth_mask.mean(0)))
        tone_region = np.minimum(_u8(data_masks[..., :1]), truth_mask)
        gap = tone_gap(conv, truth, tone_region)
        out[f"eval/swap_tone_gap/{pair}"] = gap  # signed per pair; the headline is the mean |gap|
        acc.setdefault("swap_tone_gap", []).append(abs(gap))
        if tone is not None:
          gap = tone_gap(raw_conv, truth, tone_region)
          out[f"eval/swap_tone_gap_uncalibrated/{pair}"] = gap
          acc.setdefault("swap_tone_gap_uncalibrated", []).append(abs(gap))
      if tone is not None:  # signed per pair, as the tone gap; the headline is the mean |shift|
        out[f"eval/tone_shift/{pair}"] = float(np.mean(tone[i, j]))
        acc.setdefault("tone_shift", []).append(abs(float(np.mean(tone[i, j]))))
      if judges is not None:
        lms = test["face_swap_landmarks"][sel, j] if truth_known else None
        for k, v in judges_lib.swap_scores(judges, conv, judge_mask, lms, i, j, factors).items():
          put(k, pair, v)
        if tone is not None:
          for k, v in judges_lib.swap_scores(judges, raw_conv, judge_mask, lms, i, j, factors).items():
            if k in ("attr_mae", "id_transfer"):
              put(f"{k}_uncalibrated", pair, v)
        if truth_known:  # the truth itself (the ceiling), and the stand-in that paints j's mean
          # face whatever it is given (the bar)
          true = judges_lib.swap_scores(judges, truth, judge_mask, lms, i, j, None)
          put("id_transfer_truth", pair, true["id_transfer"])
          matched = tone_matched(conv, truth, tone_region)
          put("id_transfer_tone_matched", pair,
              judges_lib.swap_scores(judges, matched, judge_mask, lms, i, j, None)["id_transfer"])
          flat = converted(x, np.broadcast_to(mean_faces[j], x.shape), None, data_masks)
          for k, v in judges_lib.swap_scores(judges, flat, judge_mask, lms, i, j, factors).items():
            if k in ("attr_mae", "id_transfer"):
              put(f"{k}_mean_face", pair, v)
        if sigma is not None:  # the true face swap blurred to the decoder's sharpness where a
          # decoder draws (converted: inside the face mask, the frame stays sharp)
          soft = converted(truth, blur(truth, sigma), None, data_masks)
          blurred = judges_lib.swap_scores(judges, soft, judge_mask, lms, i, j, factors)
          for k in ("attr_mae", "id_transfer"):
            if k in blurred:
              put(f"blur_{k}", pair, blurred[k])
  out.update({f"eval/{k}": float(np.mean(v)) for k, v in acc.items()})
  if probes is not None:
    out.update(probes(params))
  if judges is not None:  # the judges' own scores on real images: what "perfect" looks like
    out["eval/judge_accuracy"] = judges.accuracy
    if judges.attr_floors is not None:
      from encdec_jax.data.render import POSE_EXPRESSION
      out["eval/attr_mae_floor"] = judges.attr_floor
      out["eval/attr_mae_guess"] = judges.attr_guess_mean
      for n, f, g in zip(POSE_EXPRESSION, judges.attr_floors, judges.attr_guess):
        out[f"eval/attr_floor/{n}"] = float(f)
        out[f"eval/attr_guess/{n}"] = float(g)
  return out


def _calibrated(rgb_NxBxHxWx3, shift_Nx3, i: int) -> np.ndarray:
  """Every decoder's output for identity i's faces with its tone shift (encdec_jax/tone.py) off;
  decoder i's own (the reconstruction) as it is."""
  from encdec_jax import tone as tone_lib
  return np.stack([r if j == i else tone_lib.apply(r, shift_Nx3[j]) for j, r in enumerate(rgb_NxBxHxWx3)])


def preview_grid(params, decode_all, test: dict, num_identities: int, per_identity: int = 3,
                 tone=None) -> np.ndarray:
  """Rows: held-out faces. Columns: input | true face swap into 0..N-1 | converted swap into
  0..N-1 | raw decoder output 0..N-1 (the true face swaps only where the data has them). `tone`:
  as evaluate's, taken off the swaps (converted and raw)."""
  rows = []
  for i in range(num_identities):
    sel = np.flatnonzero(test["identity"] == i)[:per_identity]
    x = _u8(test["image"][sel])
    data_masks = test["mask"][sel] if "mask" in test else None
    rgb, learned = decode_batched(params, decode_all, x)
    if tone is not None:
      rgb = _calibrated(rgb, tone[i], i)
    conv = [converted(x, rgb[j], None if learned is None else learned[j], data_masks)
            for j in range(num_identities)]
    truth = [_u8(test["face_swaps"][sel, j]) for j in range(num_identities)] if "face_swaps" in test else []
    for k in range(len(x)):
      rows.append(np.stack([x[k], *(t[k] for t in truth), *(c[k] for c in conv), *rgb[:, k]]))
  return image_lib.grid(np.stack(rows))
