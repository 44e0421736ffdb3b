"""Procedural, anti-aliased cartoon faces with known identity traits and per-image factors.

Everything is a pure function of (traits, factors): the same call gives the same pixels, which is
what lets the dataset store, for every held-out image, the ground-truth swap (the same factors
rendered with another identity's traits).

Coordinates: the image spans [-1, 1] in x (right) and y (down). Shapes are signed distance
functions (negative inside); coverage = clip(0.5 - d / pixel, 0, 1) gives one-pixel anti-aliasing.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Per-image factors, in this order in the stored `factors` vector. Pose and expression are what a
# swap must keep; lighting, background and jitter are nuisance factors.
FACTOR_NAMES = (
    "yaw", "pitch", "roll",                      # pose (radians-ish)
    "smile", "mouth_open", "blink", "brow_raise",  # expression
    "light_x", "light_level",                    # lighting
    "bg_r", "bg_g", "bg_b", "bg_shade",          # background
    "shift_x", "shift_y", "scale",               # alignment jitter
)
POSE_EXPRESSION = FACTOR_NAMES[:7]
POSE, EXPRESSION = FACTOR_NAMES[:3], FACTOR_NAMES[3:7]  # expr_mae and pose_mae average these
HAIR_STYLES = ("short", "long", "bob", "mohawk", "bald", "curly")


@dataclasses.dataclass(frozen=True)
class Traits:
  """What makes an identity: fixed for all its images."""
  face_w: float
  face_h: float
  face_power: float  # superellipse exponent: 2 = oval, larger = squarer jaw
  skin: tuple
  hair_style: int
  hair: tuple
  eye_dx: float      # half distance between the eyes
  eye_y: float
  eye_w: float
  eye_h: float
  iris: tuple
  brow: tuple        # brow colour (a darker shade of the hair colour)
  brow_thick: float
  brow_tilt: float
  nose_len: float
  nose_w: float
  mouth_w: float
  mouth_y: float
  lips: tuple


def identity_traits(seed: int, identity: int) -> Traits:
  """Traits of identity `identity` in the family of faces `seed`; spread so identities differ."""
  rng = np.random.default_rng([seed, 7919, identity])
  u = lambda lo, hi: float(rng.uniform(lo, hi))
  tone = u(0.0, 1.0)
  skin = tuple(np.array([0.96, 0.80, 0.68]) * (1 - tone) + np.array([0.45, 0.30, 0.20]) * tone)
  hair_base = [(0.1, 0.07, 0.05), (0.45, 0.28, 0.12), (0.85, 0.7, 0.35), (0.6, 0.15, 0.08),
               (0.75, 0.75, 0.75), (0.2, 0.2, 0.35)][int(rng.integers(6))]
  hair = tuple(np.clip(np.array(hair_base) + rng.normal(0, 0.04, 3), 0, 1))
  iris = tuple(np.clip(rng.choice([(0.25, 0.45, 0.7), (0.35, 0.22, 0.1), (0.3, 0.5, 0.3),
                                   (0.15, 0.1, 0.08)]) + rng.normal(0, 0.03, 3), 0, 1))
  lips = tuple(np.clip(np.array(skin) * np.array([0.95, 0.6, 0.6]) + rng.normal(0, 0.03, 3), 0, 1))
  return Traits(
      face_w=u(0.42, 0.56), face_h=u(0.56, 0.70), face_power=u(2.0, 3.2), skin=skin,
      hair_style=int(rng.integers(len(HAIR_STYLES))), hair=hair,
      eye_dx=u(0.15, 0.23), eye_y=u(-0.12, -0.02), eye_w=u(0.065, 0.1), eye_h=u(0.035, 0.06),
      iris=iris, brow=tuple(np.asarray(hair) * 0.7), brow_thick=u(0.015, 0.035), brow_tilt=u(-0.25, 0.25),
      nose_len=u(0.10, 0.2), nose_w=u(0.035, 0.07), mouth_w=u(0.09, 0.17), mouth_y=u(0.24, 0.34),
      lips=lips)


def sample_factors(rng: np.random.Generator) -> np.ndarray:
  """One image's factors (see FACTOR_NAMES)."""
  u = rng.uniform
  return np.array([
      u(-0.5, 0.5), u(-0.35, 0.35), u(-0.25, 0.25),
      u(0, 1), u(0, 1) ** 2, float(u() < 0.15) * u(0.5, 1.0), u(-1, 1),
      u(-1, 1), u(0.75, 1.1),
      u(0.1, 0.9), u(0.1, 0.9), u(0.1, 0.9), u(-0.3, 0.3),
      u(-0.05, 0.05), u(-0.05, 0.05), u(0.93, 1.07),
  ], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Signed distance functions on coordinate grids x, y (any broadcastable shape).

def _ellipse(x, y, cx, cy, rx, ry):
  # Approximate SDF: exact on the axes, good enough for anti-aliasing.
  k = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
  return (k - 1.0) * min(rx, ry)


def _superellipse(x, y, cx, cy, rx, ry, p):
  k = (np.abs((x - cx) / rx) ** p + np.abs((y - cy) / ry) ** p) ** (1.0 / p)
  return (k - 1.0) * min(rx, ry)


def _capsule(x, y, ax, ay, bx, by, r):
  px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
  h = np.clip((px * dx + py * dy) / (dx * dx + dy * dy), 0.0, 1.0)
  return np.hypot(px - h * dx, py - h * dy) - r


def _cover(d, px):
  return np.clip(0.5 - d / px, 0.0, 1.0)


def _paint(img, cover, colour):
  c = cover[..., None]
  img *= 1.0 - c
  img += c * np.asarray(colour, dtype=img.dtype)


@dataclasses.dataclass(frozen=True)
class Rendering:
  image: np.ndarray      # (H, W, 3) float in [0, 1]
  mask: np.ndarray       # (H, W, 3) float in [0, 1]: visible face (not under hair), eye region, mouth region
  landmarks: np.ndarray  # (4, 2) (x, y) in [0, 1] image fractions, align.LANDMARK_NAMES order


# What a face swap moves: the face's own traits. The rest (head size, hair style and colour, the
# skin of neck and ears) is the frame's, as in Deepfakes' convert, which blends the decoded face
# into the frame inside a face mask and keeps the frame's outline, hair and background.
FACE_TRAITS = ("face_power", "skin", "eye_dx", "eye_y", "eye_w", "eye_h", "iris", "brow",
               "brow_thick", "brow_tilt", "nose_len", "nose_w", "mouth_w", "mouth_y", "lips")
FRAME_TRAITS = ("face_w", "face_h", "hair_style", "hair")


def frame_view(resolution: int) -> np.ndarray:
  """(2, 3): a resolution x resolution frame's pixels (centres at integers) -> image coordinates
  ([-1, 1], the whole head shot)."""
  return np.array([[2.0 / resolution, 0.0, 1.0 / resolution - 1.0],
                   [0.0, 2.0 / resolution, 1.0 / resolution - 1.0]])


def crop_view(frame_resolution: int, a_2x3) -> np.ndarray:
  """(2, 3): an aligned crop's pixels -> image coordinates, for the crop that `a` (frame pixels
  -> crop pixels, encdec_jax/align.py) cuts from a frame_resolution frame."""
  a = np.vstack([np.asarray(a_2x3, np.float64), [0.0, 0.0, 1.0]])
  return frame_view(frame_resolution) @ np.linalg.inv(a)


def render(traits: Traits, factors: np.ndarray, resolution: int, face: Traits | None = None,
           view: np.ndarray | None = None) -> Rendering:
  """Renders one face. Deterministic: the same inputs give the same pixels.

  `view` (2, 3): output pixels -> image coordinates, default frame_view(resolution) (the head
  shot). With crop_view, the output is an aligned crop of the frame rendered directly (as a
  camera of higher resolution would give it, not resampled); landmarks are in the output's
  fractions either way.

  `face`: whose FACE_TRAITS are painted (default `traits`). render(i, f, r, face=j) is the true
  face swap of i's image into j: i's frame (head size, hair, neck and ears, background, pose,
  expression, lighting) with j's face; its mask is the face actually painted. Pixels outside
  both faces equal i's own rendering."""
  f = dict(zip(FACTOR_NAMES, np.asarray(factors, dtype=np.float64)))
  t = traits
  ft = traits if face is None else face
  v = frame_view(resolution) if view is None else np.asarray(view, np.float64)
  px = float(np.sqrt(abs(np.linalg.det(v[:, :2]))))  # image units per output pixel
  U, V = np.meshgrid(np.arange(resolution, dtype=np.float64), np.arange(resolution, dtype=np.float64))
  X = v[0, 0] * U + v[0, 1] * V + v[0, 2]  # image coordinates
  Y = v[1, 0] * U + v[1, 1] * V + v[1, 2]

  # Head frame: undo jitter, scale and roll (the head rotates about its centre).
  cx0, cy0 = f["shift_x"], 0.04 + f["shift_y"]
  s = f["scale"]
  cr, sr = np.cos(f["roll"]), np.sin(f["roll"])
  xr, yr = (X - cx0) / s, (Y - cy0) / s
  x = cr * xr + sr * yr
  y = -sr * xr + cr * yr
  hpx = px / s

  img = np.empty((resolution, resolution, 3))
  bg = np.array([f["bg_r"], f["bg_g"], f["bg_b"]])
  img[:] = bg
  img *= (1.0 + f["bg_shade"] * Y)[..., None]
  np.clip(img, 0, 1, out=img)

  fw, fh = t.face_w, t.face_h
  hair = np.asarray(t.hair)
  style = HAIR_STYLES[t.hair_style]
  # Yaw and pitch move the inner features over the face as if it were a sphere, and shrink them
  # towards the silhouette.
  yaw, pitch = f["yaw"], f["pitch"]

  def feature_x(x0):
    a = np.arcsin(np.clip(x0 / fw, -0.95, 0.95)) + yaw
    return fw * np.sin(a), max(np.cos(a), 0.2)

  def feature_y(y0):
    return y0 + 0.3 * fh * np.sin(pitch)

  # Hair behind the head.
  if style in ("long", "bob", "curly"):
    drop = {"long": 0.95, "bob": 0.45, "curly": 0.6}[style]
    d = _ellipse(x, y, -0.08 * yaw, -0.05 + drop * 0.5, fw * 1.25, fh * 0.6 + drop * 0.55)
    if style == "curly":
      d = d + 0.03 * np.sin(14 * np.arctan2(y, x))
    _paint(img, _cover(d, hpx), hair * 0.85)
  # Neck and ears.
  neck = _capsule(x, y, 0.0, fh * 0.6, 0.0, 1.4, fw * 0.45)
  frame_skin = np.asarray(t.skin)
  _paint(img, _cover(neck, hpx), frame_skin * 0.78)
  for side in (-1, 1):
    ex = side * fw * 0.98 - 0.08 * yaw
    _paint(img, _cover(_ellipse(x, y, ex, feature_y(-0.02), 0.07, 0.12), hpx), frame_skin * 0.88)
  skin = np.asarray(ft.skin)

  # Face with Lambert-like shading from a light whose x position is a factor.
  face_d = _superellipse(x, y, 0.0, 0.0, fw, fh, ft.face_power)
  frame_face_d = face_d if face is None else _superellipse(x, y, 0.0, 0.0, fw, fh, t.face_power)
  face_cov = _cover(face_d, hpx)
  nx, ny = np.clip(x / fw, -1, 1), np.clip(y / fh, -1, 1)
  nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0, 1))
  lx = f["light_x"] * 0.8
  lz = np.sqrt(1 - lx ** 2 - 0.09)
  shade = f["light_level"] * (0.7 + 0.4 * np.clip(nx * lx - ny * 0.3 + nz * lz, 0, 1))
  face_col = np.clip(skin[None, None, :] * shade[..., None], 0, 1)
  c = face_cov[..., None]
  img = img * (1 - c) + face_col * c

  # Hair on top of the head: what it covers is no longer face (masks are of the visible face).
  if style != "bald":
    top = {"short": -0.5, "long": -0.45, "bob": -0.42, "mohawk": -0.6, "curly": -0.45}[style]
    cap = _ellipse(x, y, -0.06 * yaw, -fh * 0.35, fw * 1.08, fh * 0.78)
    line = (y - (top * fh + 0.15 * fh * (x / fw) ** 2 + 0.05 * yaw * x))
    d = np.maximum(cap, line)
    if style == "mohawk":
      d = np.maximum(_ellipse(x, y, -0.1 * yaw, -fh * 0.9, fw * 0.3, fh * 0.5), line)
    if style == "curly":
      d = d + 0.025 * np.sin(18 * x) * np.sin(18 * y)
    hair_cov = _cover(d, hpx)
    _paint(img, hair_cov, hair)
    face_cov = face_cov * (1.0 - hair_cov)
  else:
    for side in (-1, 1):
      d = _ellipse(x, y, side * fw * 0.9, -fh * 0.1, fw * 0.18, fh * 0.3)
      hair_cov = _cover(np.maximum(d, frame_face_d), hpx)
      _paint(img, hair_cov, hair)
      face_cov = face_cov * (1.0 - hair_cov)

  mask = np.zeros((resolution, resolution, 3))
  mask[..., 0] = face_cov
  vis = face_cov  # the inner features show only where the face does (not over the hair)
  landmarks = []
  # Eyes: white almond, iris, pupil; blink closes the lids.
  openness = max(1.0 - f["blink"], 0.08)
  eye_y = feature_y(ft.eye_y)
  for side in (-1, 1):
    ex, squash = feature_x(side * ft.eye_dx)
    ew, eh = ft.eye_w * squash, ft.eye_h * openness
    eye_d = _ellipse(x, y, ex, eye_y, ew, eh)
    _paint(img, vis * _cover(eye_d, hpx), (0.97, 0.97, 0.95))
    ir = ft.eye_h * 0.95
    iris_d = np.maximum(_ellipse(x, y, ex + 0.2 * ew * yaw, eye_y, ir * squash, ir), eye_d)
    _paint(img, vis * _cover(iris_d, hpx), ft.iris)
    pupil_d = np.maximum(_ellipse(x, y, ex + 0.2 * ew * yaw, eye_y, ir * 0.45 * squash, ir * 0.45), eye_d)
    _paint(img, vis * _cover(pupil_d, hpx), (0.05, 0.05, 0.05))
    lid = _ellipse(x, y, ex, eye_y, ew * 1.05, ft.eye_h * 1.05)
    lid = np.maximum(lid, -eye_d - 0.002)  # lid = around the open part
    _paint(img, vis * _cover(lid, hpx), skin * 0.8)
    # Brows.
    by = eye_y - ft.eye_h - 0.06 - 0.04 * f["brow_raise"]
    tilt = side * ft.brow_tilt * 0.08
    bd = _capsule(x, y, ex - ew * squash, by + tilt, ex + ew * squash, by - tilt, ft.brow_thick)
    _paint(img, vis * _cover(bd, hpx), np.asarray(ft.brow))
    mask[..., 1] = np.maximum(mask[..., 1], _cover(_ellipse(x, y, ex, eye_y - 0.03, ew * 1.7, ft.eye_h * 2.6), hpx))
    landmarks.append((ex, eye_y))

  # Nose: a shaded ridge and nostrils.
  nx0, _ = feature_x(0.0)
  ny0 = feature_y(0.02)
  ridge = _capsule(x, y, nx0, ny0, nx0 + 0.3 * ft.nose_w * yaw, ny0 + ft.nose_len, ft.nose_w * 0.35)
  _paint(img, vis * _cover(ridge, hpx) * 0.35, skin * 0.6)
  tip_y = ny0 + ft.nose_len
  for side in (-1, 1):
    _paint(img, vis * _cover(_ellipse(x, y, nx0 + side * ft.nose_w * 0.6, tip_y, ft.nose_w * 0.3, ft.nose_w * 0.18), hpx),
           skin * 0.45)
  landmarks.append((nx0, tip_y))

  # Mouth: lips bent by the smile, a dark opening scaled by mouth_open.
  mx, msq = feature_x(0.0)
  my = feature_y(ft.mouth_y)
  mw = ft.mouth_w * (1 + 0.25 * f["smile"]) * (0.6 + 0.4 * msq)
  curve = (0.5 * f["smile"] - 0.1) * 2.5
  yb = y - my + curve * ((x - mx) ** 2) / max(mw, 1e-3)
  open_h = 0.012 + 0.06 * f["mouth_open"]
  lips_d = _ellipse(x, yb + my, mx, my, mw, open_h + 0.022)
  _paint(img, vis * _cover(lips_d, hpx), ft.lips)
  inner = _ellipse(x, yb + my, mx, my, mw * 0.85, open_h)
  _paint(img, vis * _cover(inner, hpx), (0.25, 0.05, 0.07))
  teeth = np.maximum(inner, y - (my - open_h * 0.4 - curve * 0.0))
  _paint(img, vis * _cover(teeth, hpx) * min(1.0, f["mouth_open"] * 3), (0.95, 0.95, 0.9))
  mask[..., 2] = _cover(_ellipse(x, yb + my, mx, my, mw * 1.35, open_h + 0.06), hpx)
  landmarks.append((mx, my))

  # Head frame -> image fractions for the landmarks.
  lm = np.array(landmarks)
  ix = cx0 + s * (cr * lm[:, 0] - sr * lm[:, 1])
  iy = cy0 + s * (sr * lm[:, 0] + cr * lm[:, 1])
  out_px = np.linalg.solve(v[:, :2], np.stack([ix - v[0, 2], iy - v[1, 2]]))  # (2, 4)
  lm_img = (out_px.T + 0.5) / resolution
  mask[..., 1:] *= face_cov[..., None]
  return Rendering(np.clip(img, 0, 1), np.clip(mask, 0, 1), lm_img.astype(np.float32))


def to_uint8(a: np.ndarray) -> np.ndarray:
  return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
