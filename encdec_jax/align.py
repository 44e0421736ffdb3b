"""Face alignment: landmarks -> a similarity transform -> an aligned crop, and the way back.

A photo's face is aligned by the similarity transform (rotation, uniform scale, shift) that takes
its landmarks (left eye, right eye, nose tip, mouth centre; image left first) closest, in least
squares, to TEMPLATE: the mean landmark positions of the synthetic faces, so an aligned crop frames
a face as the built-in data does. The same transform, inverted, takes a decoded face back into the
photo (`paste_back`), blended inside a feathered mask, and leaves every pixel outside the mask as
it was.

Conventions: points are (x, y) in pixels, x right and y down, pixel centres at integer coordinates
(pixel (0, 0) covers [-0.5, 0.5]^2). A transform is a (2, 3) matrix A: p_out = A @ (x, y, 1).
"""
from __future__ import annotations

import numpy as np

from encdec_jax.pixels import remap_bilinear

# The landmarks every face carries, in this order (synthetic faces, photos, TEMPLATE's rows).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth")
# (x, y) in crop fractions, LANDMARK_NAMES order of the synthetic faces (encdec_jax/data/render.py):
# the mean over identities and factors of the synthetic data, made left-right symmetric
# (tests/align_test.py re-derives it).
TEMPLATE = np.array([[0.413, 0.474],   # left eye (image left)
                     [0.587, 0.474],   # right eye
                     [0.500, 0.608],   # nose tip
                     [0.500, 0.659]],  # mouth centre
                    np.float64)


# Face types: how much of the crop the face fills, as a zoom of TEMPLATE (the synthetic data's
# head shot, "head") about FACE_CENTRE, the centre of the visible face (convert.FACE_ELLIPSE).
# DeepFaceLab's "wf"/"f" and faceswap's "face" centering crop the face the same way: the model
# spends its pixels on the face that the convert pastes, not on hair and background. Measured
# (BENCHMARKS.md, "Face types"; tests/data_test.py): at "whole_face" the visible face covers
# 67% of the crop and the eyes are 10.5 px apart at 32 px (21% and 5.5 px at "head").
FACE_TYPES = {"head": 1.0, "whole_face": 1.9, "full_face": 2.3}
DEFAULT_FACE_TYPE = "whole_face"
FACE_CENTRE = np.array([0.5, 0.57])


def zoom_of(face_type: str) -> float:
  """The face type's zoom; ValueError naming the valid face types for another name."""
  if face_type not in FACE_TYPES:
    raise ValueError(f"face type {face_type!r} is not one of {sorted(FACE_TYPES)}")
  return FACE_TYPES[face_type]


def template(face_type: str = DEFAULT_FACE_TYPE) -> np.ndarray:
  """(4, 2) landmark positions, crop fractions, of an aligned crop of this face type."""
  return FACE_CENTRE + zoom_of(face_type) * (TEMPLATE - FACE_CENTRE)


# Plausible landmarks of an aligned crop, as fractions of its side: half to twice the template's
# eye distance (0.174 at "head") and eye-to-mouth distance (0.185), times the face type's zoom.
EYE_DISTANCE = (0.087, 0.35)
EYES_TO_MOUTH = (0.092, 0.37)


def landmarks_problem(landmarks_4x2, size: int, face_type: str = DEFAULT_FACE_TYPE) -> str | None:
  """Why these landmarks (pixels of a size x size crop, LANDMARK_NAMES order) cannot be an
  aligned face's, or None: every point inside the image, the left eye left of the right one, the
  mouth below the eyes, and the eye and eye-to-mouth distances within half to twice the
  template's."""
  z = zoom_of(face_type)
  lm = np.asarray(landmarks_4x2, np.float64)
  if lm.shape != (4, 2) or not np.isfinite(lm).all():
    return "not four finite points"
  if (lm < -0.5).any() or (lm > size - 0.5).any():
    return "a point outside the image"
  across = lm[1] - lm[0]
  if across[0] <= 0:
    return "the left eye is not left of the right eye"
  d = float(np.linalg.norm(across))
  down = np.array([-across[1], across[0]]) / d  # perpendicular to the eye line, towards the chin
  mouth = float((lm[3] - lm[:2].mean(0)) @ down)
  if mouth <= 0:
    return "the mouth is not below the eyes"
  for name, v, (lo, hi) in (("eye distance", d / size, EYE_DISTANCE),
                            ("eye-to-mouth distance", mouth / size, EYES_TO_MOUTH)):
    lo, hi = round(lo * z, 3), round(hi * z, 3)
    if not lo <= v <= hi:
      return f"{name} {v:.2f} of the crop, outside [{lo}, {hi}] ({face_type})"
  return None


def template_px(size: int, face_type: str = DEFAULT_FACE_TYPE) -> np.ndarray:
  """The face type's template in pixel coordinates of a size x size crop."""
  return template(face_type) * size - 0.5


def similarity(src_Nx2, dst_Nx2) -> np.ndarray:
  """(2, 3): the rotation + uniform scale + shift taking src closest to dst in least squares
  (Umeyama, TPAMI 1991, without reflection)."""
  src, dst = np.asarray(src_Nx2, np.float64), np.asarray(dst_Nx2, np.float64)
  if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
    raise ValueError(f"need two (N, 2) point sets, N >= 2; got {src.shape} and {dst.shape}")
  ms, md = src.mean(0), dst.mean(0)
  s, d = src - ms, dst - md
  var = (s ** 2).sum() / len(src)
  if var <= 0:
    raise ValueError("the source points coincide: no transform")
  u, sig, vt = np.linalg.svd(d.T @ s / len(src))
  e = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
  rot = u @ e @ vt
  scale = (sig * np.diag(e)).sum() / var
  return np.hstack([scale * rot, (md - scale * rot @ ms)[:, None]])


def invert(a_2x3) -> np.ndarray:
  a = np.asarray(a_2x3, np.float64)
  r = np.linalg.inv(a[:, :2])
  return np.hstack([r, -r @ a[:, 2:]])


def apply(a_2x3, pts_Nx2) -> np.ndarray:
  p = np.asarray(pts_Nx2, np.float64)
  return p @ np.asarray(a_2x3, np.float64)[:, :2].T + np.asarray(a_2x3, np.float64)[:, 2]


def scale_of(a_2x3) -> float:
  return float(np.sqrt(abs(np.linalg.det(np.asarray(a_2x3, np.float64)[:, :2]))))


def align_transform(landmarks_4x2, size: int, face_type: str = DEFAULT_FACE_TYPE) -> np.ndarray:
  """Photo pixels -> crop pixels of a size x size aligned crop of this face type."""
  return similarity(landmarks_4x2, template_px(size, face_type))


def sample(img_HxWxC, x, y, outside: str = "edge") -> np.ndarray:
  """Bilinear samples of img at float pixel coordinates x, y (any equal shapes) -> (*x.shape, C)
  float32. outside: "edge" repeats the border pixels, "zero" is 0 beyond half a pixel out."""
  img = np.asarray(img_HxWxC, np.float32)
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if outside == "zero":  # a one-pixel zero border, so values fade to 0 over the last pixel
    img = np.pad(img, ((1, 1), (1, 1), (0, 0)))
    x, y = x + 1, y + 1
  return remap_bilinear(img[None], y[None], x[None])[0].astype(np.float32)


def _grid(x0: int, y0: int, x1: int, y1: int):
  ys, xs = np.mgrid[y0:y1, x0:x1]
  return xs.astype(np.float64), ys.astype(np.float64)


def warp(img_HxWxC, a_2x3, out_h: int, out_w: int, outside: str = "edge") -> np.ndarray:
  """(out_h, out_w, C) float32: out[v, u] = img at invert(a) @ (u, v, 1); a maps img -> out."""
  xs, ys = _grid(0, 0, out_w, out_h)
  b = invert(a_2x3)
  return sample(img_HxWxC, b[0, 0] * xs + b[0, 1] * ys + b[0, 2],
                b[1, 0] * xs + b[1, 1] * ys + b[1, 2], outside)


def _shrink(region, w: int, h: int) -> np.ndarray:
  """A region resized to (h, w) with Lanczos: uint8 as RGB, floats channel by channel."""
  from PIL import Image
  if region.dtype == np.uint8:
    return np.asarray(Image.fromarray(region).resize((w, h), Image.Resampling.LANCZOS))
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(region[..., c], np.float32), "F")
                              .resize((w, h), Image.Resampling.LANCZOS)) for c in range(region.shape[-1])], -1)


def crop(photo_HxWxC, a_2x3, size: int) -> np.ndarray:
  """The aligned size x size crop of a photo or frame, a: photo pixels -> crop pixels; uint8 in,
  uint8 out, floats in, float32 out. A face larger than the crop is first shrunk with Lanczos
  (only the region the crop covers), so the crop is not aliased; beyond the photo's border, its
  edge pixels repeat."""
  photo = np.asarray(photo_HxWxC)
  a = np.asarray(a_2x3, np.float64)
  s = scale_of(a)
  if s < 0.75:
    # The photo region under the crop, with a margin, shrunk by ~s.
    corners = apply(invert(a), [[-1, -1], [size, -1], [-1, size], [size, size]])
    h, w = photo.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 2, 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 3, [x0 + 1, y0 + 1], [w, h])
    rw, rh = max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))
    small = _shrink(photo[y0:y1, x0:x1], rw, rh)
    fx, fy = rw / (x1 - x0), rh / (y1 - y0)
    # small pixel (x', y') has its centre at region x = (x' + 0.5) / fx - 0.5, photo x = that + x0
    to_photo = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0]])
    a = a @ np.vstack([to_photo, [0, 0, 1]])
    photo = small
  out = warp(photo, a, size, size, "edge")
  if np.asarray(photo_HxWxC).dtype != np.uint8:
    return out
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def paste_back(photo_HxWxC, face_SxSx3, mask_SxSx1, a_2x3) -> np.ndarray:
  """The photo (or frame) with `face` (an aligned crop's decoded face, floats in [0, 1]) warped
  back by the inverse of a (photo -> crop) and blended in where `mask` (the crop's feathered
  mask, [0, 1]) is above 0: m * face + (1 - m) * photo. Pixels where the warped mask is 0 are the
  photo's, exactly. A uint8 photo gives uint8, a float one (in [0, 1]) float32."""
  photo = np.asarray(photo_HxWxC)
  unit = 255.0 if photo.dtype == np.uint8 else 1.0
  size = face_SxSx3.shape[0]
  h, w = photo.shape[:2]
  corners = apply(invert(a_2x3), [[-1, -1], [size, -1], [-1, size], [size, size]])
  x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w, h])
  x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, [w, h])
  out = photo.copy() if unit == 255.0 else photo.astype(np.float32)
  if x1 <= x0 or y1 <= y0:
    return out
  xs, ys = _grid(x0, y0, x1, y1)
  a = np.asarray(a_2x3, np.float64)
  cx = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
  cy = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
  m = np.clip(sample(mask_SxSx1, cx, cy, "zero"), 0.0, 1.0)
  face = sample(np.clip(face_SxSx3, 0.0, 1.0), cx, cy, "edge") * unit
  region = out[y0:y1, x0:x1].astype(np.float32)
  blended = m * face + (1 - m) * region
  if unit == 255.0:
    blended = np.clip(np.round(blended), 0, 255).astype(np.uint8)
  out[y0:y1, x0:x1] = np.where(m > 0, blended, out[y0:y1, x0:x1])
  return out


def crops(frames_BxHxWxC, transforms_Bx2x3, size: int) -> np.ndarray:
  """`crop` of every frame by its transform: (B, size, size, C) float32 in [0, 1] (uint8 frames
  are scaled)."""
  from encdec_jax.pixels import to_unit_float
  f = to_unit_float(frames_BxHxWxC)
  return np.stack([crop(x, a, size) for x, a in zip(f, transforms_Bx2x3)]).reshape(
      (len(f), size, size, f.shape[-1]))

