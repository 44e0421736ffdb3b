"""What every evaluation metric means: one registry that the report renders and the README's
metric table is checked against (tests/metrics_test.py).

Scalars are named `eval/<metric>` (the mean over identities or ordered pairs) and, per part,
`eval/<metric>/<i>` or `eval/<metric>/<i>to<j>`. "Converted" is what a user sees: the decoder's
output (an aligned crop) pasted back into the source frame inside the face mask
(encdec_jax/convert.py). The "true face swap" is what a perfect convert would produce, stored by
the synthetic data: the source's frame with the target's face. Pixel metrics compare frames;
the judges read the aligned crop of a frame, as the model does.
"""
from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Metric:
  names: str    # the metric's name or names, as the README's table shows them
  better: str   # "lower", "higher", or "" (a reference or a diagnosis, not a score)
  meaning: str  # what it measures


REGISTRY = (
    Metric("swap_face_{mae,ssim,psnr}", "lower MAE, higher SSIM and PSNR",
           "the converted swap against the true face swap, inside the face region (the union of "
           "the source's and the true face swap's face masks: where a swap can differ from its frame)"),
    Metric("swap_{mae,ssim,psnr}", "lower MAE, higher SSIM and PSNR", "the same over the whole frame"),
    Metric("swap_face_mae_input, swap_mae_input", "",
           "what copying the input scores on the same region: the bar a swap must beat"),
    Metric("swap_face_mae_oracle", "",
           "what converting the target's true full-head rendering (in the source's crop) scores: a "
           "decoder that draws identity j exactly as trained (its own head size and hairline) gets "
           "this far"),
    Metric("raw_swap_{mae,ssim,psnr}", "lower MAE, higher SSIM and PSNR",
           "the raw decoder output (no convert) against the target's full-head rendering, in the crop"),
    Metric("recon_{mae,ssim,psnr}, recon_face_mae, raw_recon_mae", "lower MAE, higher SSIM and PSNR",
           "decoder i on encoder(x_i): converted (in the frame), converted inside the face, raw (in the crop)"),
    Metric("id_transfer", "higher",
           "share of converted swaps into j that the identity judge, reading the face region "
           "only, recognises as j (papers' identity retrieval)"),
    Metric("id_leak", "lower", "share of converted swaps still recognised as the source"),
    Metric("attr_mae, attr_err/<factor>", "lower",
           "the pose/expression judge's error between the converted swap and its source's true "
           "factors, in standard deviations, over the factors the judge can read"),
    Metric("attr_bias/<factor>, recon_attr_bias/<factor>", "",
           "the judge's signed error per factor (its reading of the swap, or of the "
           "reconstruction, minus the source's factor; > 0: more of it than the source shows), "
           "per direction in `attr_bias/<factor>/<i>to<j>` (read those: the mean over directions "
           "can cancel): a decoder that draws every face with more smile shows there as a "
           "constant, where `attr_err` mixes it with the misses"),
    Metric("attr_corr/<factor>", "higher",
           "per direction (`attr_corr/<factor>/<i>to<j>`), the correlation over the held-out "
           "swaps between the judge's reading and the source's factor: 1, the swaps follow the "
           "source; 0, they ignore it; below 0, they move the other way (an `attr_err` worse than "
           "guessing can be either: family 0's brows into the other identity read -0.7)"),
    Metric("expr_mae", "lower",
           "`attr_mae` over the readable expression factors (smile, mouth_open, blink, brow_raise): "
           "did the swap keep the source's expression"),
    Metric("pose_mae", "lower",
           "`attr_mae` over the readable pose factors (yaw, pitch; roll where read: an aligned crop "
           "turns faces upright, and the paste-back restores the frame's roll exactly): did it keep "
           "the pose"),
    Metric("judge_accuracy, {attr,expr,pose}_mae_floor, attr_floor/<factor>, "
           "{attr,expr,pose}_mae_guess, attr_guess/<factor>, judge_panel", "",
           "the judges' own scores on real held-out renderings, and what guessing the mean scores; "
           "`judge_panel`: how many judges, fitted alike with different seeds, the readings average"),
    Metric("id_transfer_truth, {attr,expr,pose}_mae_truth, attr_err_truth/<factor>", "",
           "the judges on the true face swaps themselves: the most `id_transfer` can show, and the "
           "least pose/expression error (above the floor where the judge reads a face in another "
           "identity's frame less well than on real renderings)"),
    Metric("id_transfer_pasted, {attr,expr,pose}_mae_pasted, attr_err_pasted/<factor>", "",
           "the judges on the true face swaps' crops pasted back into the source's frames as a "
           "decoded crop is: what a decoder that drew the true swap's crop scores through this "
           "convert (the frame's head outline and the crop's edge included)"),
    Metric("id_transfer_ideal, {attr,expr,pose}_mae_ideal, attr_err_ideal/<factor>, "
           "attr_bias_ideal/<factor>, attr_corr_ideal/<factor>", "",
           "the judges on j's own aligned crops at the sources' factors (synthetic data only), "
           "converted into the source's frames as a swap is: what a perfect decoder j draws, which "
           "learns only j's crops. Its features sit where j's own crops have them, not where the "
           "true face swap's do (up to 1.5 px apart at 32 px); the judges find them where they are "
           "(judges.locate, since VERSION 10), so it reads near the judges' floor. "
           "`attr_bias_ideal/<factor>/<i>to<j>`, its signed error per direction, is the part of "
           "a swap's `attr_bias` the judges show on a perfect swap of that direction; "
           "`attr_corr_ideal`, how well its readings follow the source's"),
    Metric("attr_mae_mean_face, id_transfer_mean_face", "",
           "what a decoder that ignores its input scores: j's mean held-out face converted into the "
           "source's frame. The crop's outline may give the judge some pose, so this, not guessing, "
           "is the `attr_mae` a swap must beat"),
    Metric("swap_variation, recon_variation", "higher",
           "how much the raw decoder output varies from input to input inside the face, over how "
           "much the truth does: near 1 it draws what it is given, near 0 it paints one face "
           "whatever the input (the report's diagnosis names runs below 0.25)"),
    Metric("swap_tone_gap", "lower",
           "the converted swaps' mean colour inside the face minus the true face swaps', averaged "
           "over channels: signed per pair (> 0: lighter than the target's skin), the mean of its "
           "size as the headline"),
    Metric("id_transfer_tone_matched", "",
           "`id_transfer` of the converted swaps with the pair's mean colour gap to the true swaps "
           "taken off inside the face: how much of a failed transfer is the tone alone"),
    Metric("tone_shift, *_uncalibrated", "",
           "with `eval.tone=train`: the colour shift taken off each pair's swaps (signed, mean over "
           "channels; the mean of its size as the headline), and `id_transfer`, `attr_mae` and "
           "`swap_tone_gap` of the same swaps without it"),
    Metric("recon_id_accuracy, recon_{attr,expr,pose}_mae, recon_attr_err/<factor>",
           "higher accuracy, lower error",
           "the judges on the converted reconstructions (i -> i, at the source's own landmarks): a "
           "model that loses the smile here cannot draw it at all"),
    Metric("blur_sigma, blur_attr_mae, blur_id_transfer", "",
           "what blur alone does to the judges: the decoder's sharpness (the Gaussian sigma, px, "
           "whose blur of the input is nearest its raw reconstruction inside the face), and the "
           "judges on the true face swaps blurred by it inside the face mask"),
    Metric("probe_id_accuracy", "lower",
           "identity read by a linear (ridge) probe from the shared latent, fitted on training "
           "faces, scored on held-out ones: chance means the latent is shared"),
    Metric("probe_attr_same, probe_attr_cross (and /<factor>)", "",
           "pose/expression probes fitted on one identity's latents, scored on its own held-out "
           "faces (the probe's floor) and on the other identities' (near the floor when the code "
           "means the same whoever it encodes)"),
    Metric("*_se", "",
           "the bootstrap standard error of a metric's mean over the held-out images (1000 "
           "resamples within each identity or pair; for `attr_corr`, of the correlation, each "
           "direction's faces resampled together): how much it would move on other faces of the "
           "same identities; compare it with the spread over seeds"),
)

# The report's headline columns, in table order: (metric, better).
HEADLINE = (("swap_face_mae", "lower"), ("swap_mae", "lower"), ("swap_face_ssim", "higher"),
            ("id_transfer", "higher"), ("id_leak", "lower"), ("attr_mae", "lower"),
            ("expr_mae", "lower"), ("pose_mae", "lower"), ("recon_face_mae", "lower"),
            ("recon_attr_mae", "lower"), ("recon_expr_mae", "lower"), ("probe_id_accuracy", "lower"),
            ("raw_swap_mae", "lower"))

# Reference lines drawn on each headline metric's plots: (result key, label).
REFERENCES = {
    "swap_face_mae": (("eval/swap_face_mae_input", "copying the input"),
                      ("eval/swap_face_mae_oracle", "j's true head, converted")),
    "swap_mae": (("eval/swap_mae_input", "copying the input"),),
    "attr_mae": (("eval/attr_mae_floor", "judge's floor (real faces)"),
                 ("eval/attr_mae_mean_face", "j's mean face, converted"),
                 ("eval/attr_mae_guess", "guessing the mean")),
    "expr_mae": (("eval/expr_mae_floor", "judge's floor (real faces)"),
                 ("eval/expr_mae_truth", "the true face swaps"),
                 ("eval/expr_mae_pasted", "the true swap's crop, pasted"),
                 ("eval/expr_mae_ideal", "a perfect decoder j (j's own crop)"),
                 ("eval/expr_mae_guess", "guessing the mean")),
    "pose_mae": (("eval/pose_mae_floor", "judge's floor (real faces)"),
                 ("eval/pose_mae_pasted", "the true swap's crop, pasted"),
                 ("eval/pose_mae_ideal", "a perfect decoder j (j's own crop)"),
                 ("eval/pose_mae_guess", "guessing the mean")),
    "id_transfer": (("eval/id_transfer_truth", "the true face swaps"),
                    ("eval/id_transfer_mean_face", "j's mean face, converted")),
}


def _top_level(names: str) -> list[str]:
  """`names` split at the commas outside {...}, stripped."""
  parts, depth, cur = [], 0, ""
  for ch in names:
    depth += (ch == "{") - (ch == "}")
    if ch == "," and depth == 0:
      parts.append(cur.strip())
      cur = ""
    else:
      cur += ch
  return parts + [cur.strip()]


def expand(names: str) -> list[str]:
  """The metric names a registry entry covers: `swap_{mae,ssim}` -> swap_mae, swap_ssim;
  patterns (`attr_err/<factor>`, `*_uncalibrated`) kept as written, `(and ...)` dropped."""
  out = []
  for part in _top_level(names.split(" (and")[0]):
    if "{" in part:
      head, rest = part.split("{", 1)
      alts, tail = rest.split("}", 1)
      out += [f"{head}{a.strip()}{tail}" for a in alts.split(",")]
    else:
      out.append(part)
  return out


def meaning(metric: str) -> Metric | None:
  """The registry entry that covers `metric` (a plain name such as 'attr_mae')."""
  return next((m for m in REGISTRY if metric in expand(m.names)), None)


def table_lines() -> list[str]:
  """The README's metric table, rendered from REGISTRY."""
  out = ["| metric | better | what |", "|---|---|---|"]
  for m in REGISTRY:
    names = ", ".join(f"`{n}`" for n in _top_level(m.names))
    out.append(f"| {names} | {m.better or '-'} | {m.meaning} |")
  return out


def entry(scalar: str) -> Metric | None:
  """The registry entry that explains an evaluation scalar such as 'eval/attr_err/smile',
  'eval/swap_mae/0to1' or 'eval/id_transfer_uncalibrated' (None if none does)."""
  name = re.sub(r"/\d+(to\d+)?$", "", scalar.removeprefix("eval/"))
  base, _, factor = name.partition("/")
  for m in REGISTRY:
    names = expand(m.names)
    if factor:
      if f"{base}/<factor>" in names or (base in names and "(and /<factor>)" in m.names):
        return m
    elif name in names or any(n.startswith("*") and name.endswith(n[1:]) for n in names):
      return m
  return None
