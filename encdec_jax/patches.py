"""What the pose/expression judge reads: pixels in patches at a face's eye, nose and mouth
landmarks (`patch_features`), and the locator that moves given landmarks to where a face's
features are before it reads (`locate`, fitted by `fit_locator`).

A swap is read where its features are, not where the true face swap has them: a per-identity
decoder draws the target's face in the target's own layout, up to 1.5 px from the true swap's
landmarks at 32 px (BENCHMARKS.md, "Judges")."""
from __future__ import annotations

import numpy as np

from encdec_jax.pixels import remap_bilinear
from encdec_jax.ridge import ridge_cv

# (landmark, patch side as a fraction of a "head" crop: times the face type's zoom, at most the
# whole crop) sampled on a PATCH_SAMPLES^2 grid; the nose patch covers most of the face (pose),
# the others the expression's details.
PATCHES = ((0, 0.25), (1, 0.25), (2, 0.7), (3, 0.35))  # align.LANDMARK_NAMES indices
PATCH_SAMPLES = 12
LOCATE_SD = 1.0    # sd, in pixels, of the moves the locator is fitted to undo
LOCATE_STEPS = 2   # the locator's refinement steps
LOCATE_MAX = 2.0   # pixels: the largest move of one step


def patch_features(x_BxHxWx3, landmarks_Bx4x2, scale: float = 1.0) -> np.ndarray:
  """Pixels sampled (bilinear) on a PATCH_SAMPLES^2 grid over a square around each landmark of
  PATCHES, each side times `scale` (at most 1): (B, len(PATCHES) * PATCH_SAMPLES^2 * 3)."""
  x = np.asarray(x_BxHxWx3, np.float32)
  lm = np.asarray(landmarks_Bx4x2, np.float32)
  b, h, w, _ = x.shape
  t = (np.arange(PATCH_SAMPLES) + 0.5) / PATCH_SAMPLES - 0.5
  out = []
  for k, side in PATCHES:
    side = min(1.0, side * scale)
    cy = lm[:, k, 1, None, None] * h - 0.5 + t[None, :, None] * side * h
    cx = lm[:, k, 0, None, None] * w - 0.5 + t[None, None, :] * side * w
    shape = (b, PATCH_SAMPLES, PATCH_SAMPLES)
    out.append(remap_bilinear(x, np.broadcast_to(cy, shape), np.broadcast_to(cx, shape)).reshape(b, -1))
  return np.concatenate(out, -1)


def _px_per_unit(x) -> np.ndarray:
  """(x, y) pixels per unit of the landmarks' coordinates."""
  return np.array([x.shape[2], x.shape[1]], np.float32)


def fit_locator(x_face, landmarks, scale: float, copies: int, seed: int = 0) -> dict:
  """The locator: a ridge readout, from the patch features read at landmarks moved by Gaussian
  noise of sd LOCATE_SD px, of the move back (px, per landmark and axis): {w (P, 8), mu, sd}.
  `x_face`, `landmarks`: the judges' training images (face only, in `copies` blocks as ridge_cv
  takes them) and where their features are; `scale`: the patches' (patch_features)."""
  move = np.random.default_rng(seed + 2).normal(0.0, LOCATE_SD, landmarks.shape).astype(np.float32)
  pf = patch_features(x_face, landmarks + move / _px_per_unit(x_face), scale).astype(np.float64)
  mu, sd = pf.mean(0), pf.std(0) + 1e-6
  w = ridge_cv((pf - mu) / sd, -move.reshape(len(move), -1).astype(np.float64), copies)
  return {"w": w, "mu": mu.astype(np.float32), "sd": sd.astype(np.float32)}


def locate(locator: dict | None, x_face, landmarks_Bx4x2, scale: float) -> np.ndarray:
  """The landmarks moved to where this face's eyes, nose and mouth are: LOCATE_STEPS steps of the
  locator's readout of the patches at the current landmarks, each move at most LOCATE_MAX px.
  Without a locator (None), the landmarks as given."""
  lm = np.asarray(landmarks_Bx4x2, np.float32)
  if locator is None:
    return lm
  r = _px_per_unit(x_face)
  for _ in range(LOCATE_STEPS):
    pf = (patch_features(x_face, lm, scale) - locator["mu"]) / locator["sd"]
    move = np.clip((pf @ locator["w"]).reshape(lm.shape), -LOCATE_MAX, LOCATE_MAX)
    lm = lm + move / r
  return lm
