"""Face, eye and mouth regions of an aligned crop, derived from its landmarks (no hand drawing).

Image folders have no rendered masks. What they have is where the face is: every crop that
experiments.extract writes carries its landmarks and the transform to the template (its JSON),
and any aligned crop has its eyes, nose and mouth near the template's (encdec_jax/align.py). The
masks here place, from the four landmarks (eyes, nose, mouth centre) in pixels:
  face:  the convert's face ellipse (convert.FACE_ELLIPSE), moved, turned and scaled by the
         similarity that takes the template's landmarks to these;
  eyes:  an ellipse at each eye, 0.3 x 0.4 of the eye distance (half-axes), 0.05 of it above;
  mouth: an ellipse at the mouth centre, 0.42 x 0.3 of the eye distance;
each with the same soft edge as the convert's ellipse, eyes and mouth inside the face. The sizes
were fitted to the synthetic faces' rendered masks on held-out renderings from their true
landmarks: mean IoU 0.71 (eyes) and 0.68 (mouth) at 32 px (tests/folders_test.py checks the
overlap on the composites).
"""
from __future__ import annotations

import numpy as np

from encdec_jax import align

EYE = {"up": 0.05, "rx": 0.3, "ry": 0.4}      # in eye distances
MOUTH = {"up": 0.0, "rx": 0.42, "ry": 0.3}
FEATHER = 0.08  # the soft edge, x the image side (as convert.soft_ellipse)


def _soft(resolution, cx, cy, rx, ry, angle):
  """(R, R) in [0, 1]: a rotated ellipse (pixels: centre, half-axes, angle) with a soft edge."""
  t = np.arange(resolution, dtype=np.float64)
  y, x = np.meshgrid(t, t, indexing="ij")
  c, s = np.cos(angle), np.sin(angle)
  u, v = (c * (x - cx) + s * (y - cy)) / rx, (-s * (x - cx) + c * (y - cy)) / ry
  d = np.sqrt(u * u + v * v) - 1.0
  k = np.clip(0.5 - d * min(rx, ry) / (FEATHER * resolution), 0.0, 1.0)
  return k * k * (3 - 2 * k)


def masks_from_landmarks(landmarks_4x2, resolution: int, face_type: str = align.DEFAULT_FACE_TYPE) -> np.ndarray:
  """(R, R, 3) float32 in [0, 1]: face, eye and mouth regions (the synthetic data's channels)
  for a crop whose landmarks (eyes, nose, mouth centre; pixels, x right, y down) are given. The
  face ellipse and the template zoom together, so the face type changes only where the template
  puts a face that has no landmarks."""
  from encdec_jax.convert import face_ellipse
  FACE_ELLIPSE = face_ellipse(face_type)
  lm = np.asarray(landmarks_4x2, np.float64)
  a = align.similarity(align.template_px(resolution, face_type), lm)  # template -> these landmarks
  scale = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
  turn = float(np.arctan2(a[1, 0], a[0, 0]))
  centre = a @ np.array([FACE_ELLIPSE["cx"] * resolution - 0.5, FACE_ELLIPSE["cy"] * resolution - 0.5, 1.0])
  face = _soft(resolution, centre[0], centre[1], FACE_ELLIPSE["rx"] * resolution * scale,
               FACE_ELLIPSE["ry"] * resolution * scale, turn)
  across = lm[1] - lm[0]
  d = max(float(np.linalg.norm(across)), 1.0)
  angle = float(np.arctan2(across[1], across[0]))
  up = np.array([np.sin(angle), -np.cos(angle)])  # perpendicular to the eye line, towards the brows
  eyes = np.zeros_like(face)
  for p in lm[:2]:
    c = p + EYE["up"] * d * up
    eyes = np.maximum(eyes, _soft(resolution, c[0], c[1], EYE["rx"] * d, EYE["ry"] * d, angle))
  c = lm[3] + MOUTH["up"] * d * up
  mouth = _soft(resolution, c[0], c[1], MOUTH["rx"] * d, MOUTH["ry"] * d, angle)
  return np.stack([face, eyes * face, mouth * face], -1).astype(np.float32)
