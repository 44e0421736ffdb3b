"""Convert: a swap as a user sees it, the decoded face blended into the frame inside a face mask.

Deepfakes' convert step pastes the decoder's output into the source frame inside a face mask, so
hair and background stay the frame's (the hairstyle-visualizer use: your face in a photo of a
hairstyle). The model sees an aligned crop of the frame (encdec_jax/align.py); `into_frames`
pastes its decoded crop back into the frame by the inverse of the crop's transform, inside the
feathered mask: synthetic frames (evaluation, previews, the sweep's swap grid) and photos
(`experiments.swap`, encdec_jax/photos.py) take this one path, so what is measured is what is
shown. `convert` blends in the crop itself, where there is no frame (a folder of crops).

The mask, in order of preference: the model's learned mask (decoders with `model.learn_mask`
predict their own face's mask), times the data's face mask where there is one; the data's face
mask (synthetic faces store it); else a soft ellipse over the face of an aligned crop (image
folders, photos: FACE_ELLIPSE). Its edge is feathered by a Gaussian blur, so the seam is not a
one-pixel step.

Where the aligned crop does not hold the whole face (the default `whole_face` crop ends inside
the forehead, cheeks and chin), the frame's skin round the paste first takes the swap's tone
(`carry_tone`), as the true face swap has it: else a ring of the frame's own face shows round
every swap between identities of different tones. Hair, ears of another colour, neck and
background keep the frame's.
"""
from __future__ import annotations

import numpy as np

from encdec_jax.pixels import gaussian_blur, to_unit_float

# Gaussian sigma of the feathered edge, as a fraction of the image side (1 px at 64 px).
FEATHER = 1 / 64
# Pasted back into a frame, the mask also fades to 0 at the circle inscribed in the crop, over
# this fraction of the crop's side (3.2 px at 32 px): where the face runs past the crop (chin,
# cheeks, forehead), the swap ends in a rounded outline, as a face does. (A fade to the crop's
# edges, this project's earlier convert, left the crop's square in every swap whose face differs
# in tone from its frame's, and its outline turned with the head: a pose cue in the frame.)
BORDER = 0.1
# Outside that circle the frame's own face stays: a ring of its skin round every swap, the most
# visible seam where the two identities' tones differ. Before the paste, the frame's skin there
# takes the swap's tone (carry_tone): pixels of the skin's chromaticity (Gaussian key of this
# sigma on r, g, b over their sum, so shading keeps its key; brightness within LUMA of the
# skin's), inside the face type's face ellipse grown by TONE_GROW above and to the sides (the
# forehead and crown, the cheeks) and TONE_BELOW of its half-height below the centre (the jaw,
# not the neck). Measured on 48 true face swaps of families 0 and 1 pasted back (tests/
# convert_test.py): the error to the true swap on the faces 0.082 -> 0.023, elsewhere 0.0014 ->
# 0.0047 (ears and the top of the neck, of the skin's colour). Below the centre, 0.85 / 0.9 /
# 1.0 give 0.025 / 0.024 / 0.022 on the faces and 0.0038 / 0.0042 / 0.0052 elsewhere; at 0.85
# the frame's jaw stays dark under a pale swap, at 1.05 a band of the neck turns pale.
TONE_KEY = 0.03
TONE_LUMA = (0.35, 2.5)
TONE_GROW = 2.0
TONE_BELOW = 0.95
# A wall or background of the skin's chromaticity is keyed too, and took the swap's tone as a halo
# round the head (families 2, 7 and 8 of the synthetic data). So only keyed pixels joined to the
# face's skin count (_joined_skin): regions of keyed pixels, split wherever a step between
# neighbours exceeds TONE_EDGE x the skin's brightest channel (the head's outline), of which
# TONE_SHARE or more lies under the pasted crop's mask (a background has a sliver there), with
# TONE_RIM frame pixels round them (the outline's antialiased pixels, which the step splits
# off). Where no region is that much under the mask (the skin runs on into a background of its
# colour with no step, or all of the reach is skin), the one most under it is kept: the key alone,
# as before. Measured on a perfect decoder's crops, 12 swaps each way in families 0-9 (error to
# the true swap): on the faces 0.0189 -> 0.0190, elsewhere 0.0042 -> 0.0023, the worst image
# elsewhere 0.090 -> 0.015 (family 7, where the neck runs into the background). A step of 0.15
# lets family 2's halo back (worst 0.048); 0.06 splits shaded skin (faces 0.021); a rim of 1
# leaves the outline dark (faces 0.0193).
TONE_EDGE = 0.1
TONE_SHARE = 0.25
TONE_RIM = 2


def border_fade(size: int, width: float = BORDER) -> np.ndarray:
  """(S, S, 1) in [0, 1]: 0 on and outside the circle inscribed in the crop, rising smoothly
  (with the distance inside it) to 1 at `width` x S inside it."""
  t = (np.arange(size) + 0.5) / size - 0.5
  inside = 0.5 - np.sqrt(t[:, None] ** 2 + t[None, :] ** 2)  # distance inside the circle, in sides
  r = np.clip(inside / width, 0.0, 1.0)
  return (r * r * (3 - 2 * r))[..., None].astype(np.float32)


# The face of an aligned "head" crop: the ellipse with the centre and second moments of the
# synthetic data's mean face mask (visible face, not under hair; 300 renders of 60 identities),
# which the alignment template (encdec_jax/align.py) frames the same way. The wider, centred
# ellipse it replaces (0.36 x 0.44) pasted the decoder's hair and background over the frame's.
# Other face types zoom it about its centre (face_ellipse).
FACE_ELLIPSE = {"cx": 0.5, "cy": 0.57, "rx": 0.265, "ry": 0.29}


def face_ellipse(face_type: str | None = None) -> dict:
  """FACE_ELLIPSE in the crop of a face type (align.FACE_TYPES; default align's default)."""
  from encdec_jax import align
  z = align.zoom_of(face_type or align.DEFAULT_FACE_TYPE)
  return {**FACE_ELLIPSE, "rx": FACE_ELLIPSE["rx"] * z, "ry": FACE_ELLIPSE["ry"] * z}


def _smooth_inside(x, y, e: dict, rx, ry, feather: float) -> np.ndarray:
  """1 inside the ellipse of centre e's and radii rx, ry (crop fractions; arrays allowed) at the
  points (x, y), 0 outside, a smoothstep `feather` (in units of e's smaller radius) wide at its
  edge."""
  d = np.sqrt(((x - e["cx"]) / rx) ** 2 + ((y - e["cy"]) / ry) ** 2) - 1.0  # < 0 inside
  s = np.clip(0.5 - d * min(e["rx"], e["ry"]) / feather, 0.0, 1.0)
  return s * s * (3 - 2 * s)


def soft_ellipse(resolution: int, face_type: str | None = None, feather: float = 0.08) -> np.ndarray:
  """(R, R, 1) in [0, 1]: 1 inside the face type's face ellipse (face_ellipse), a smooth ramp
  `feather` x R wide at its edge, 0 outside."""
  e = face_ellipse(face_type)
  t = (np.arange(resolution) + 0.5) / resolution
  y, x = np.meshgrid(t, t, indexing="ij")
  return _smooth_inside(x, y, e, e["rx"], e["ry"], feather)[..., None].astype(np.float32)


def feather(mask_BxHxWx1: np.ndarray, sigma: float = FEATHER) -> np.ndarray:
  """The mask blurred by a Gaussian of `sigma` x the image side (no blur if that is < 0.25 px)."""
  m = np.asarray(mask_BxHxWx1, np.float32)
  _, h, w, _ = m.shape
  s = sigma * max(h, w)
  if s < 0.25:
    return m
  return gaussian_blur(m, s)


def convert(frame_BxHxWx3, face_BxHxWx3, mask_BxHxWx1, sigma: float = FEATHER) -> np.ndarray:
  """The decoded face blended into the frame: m * face + (1 - m) * frame, m the feathered mask.
  All three at the frame's resolution, floats in [0, 1]."""
  m = feather(mask_BxHxWx1, sigma)
  face = np.asarray(face_BxHxWx3, np.float32)
  return m * face + (1.0 - m) * np.asarray(frame_BxHxWx3, np.float32)


def _chromaticity(rgb) -> np.ndarray:
  return rgb / np.maximum(rgb.sum(-1, keepdims=True), 1e-3)


def _tone_reach(face_type: str | None):
  """(e, rx, up, down): carry_tone's ellipse, the face type's face ellipse e grown TONE_GROW times
  to the sides (rx) and above (up), TONE_BELOW times below (down), in crop fractions."""
  e = face_ellipse(face_type)
  return e, e["rx"] * TONE_GROW, e["ry"] * TONE_GROW, e["ry"] * TONE_BELOW


def _skin_box(frame_hw, a_2x3, size: int, face_type: str | None) -> tuple[int, int, int, int]:
  """(y0, y1, x0, x1): the frame's box round skin_window's reach (with its smooth edge), clipped
  to the frame."""
  from encdec_jax import align
  e, rx, up, down = _tone_reach(face_type)
  g = 1 + 0.5 * 0.08 / min(e["rx"], e["ry"])  # how far past the ellipse its smooth edge reaches
  corners = np.array([[e["cx"] - g * rx, e["cy"] - g * up], [e["cx"] + g * rx, e["cy"] - g * up],
                      [e["cx"] - g * rx, e["cy"] + g * down], [e["cx"] + g * rx, e["cy"] + g * down]]) * size - 0.5
  box = align.apply(align.invert(a_2x3), corners)
  h, w = frame_hw
  x0, y0 = np.clip(np.floor(box.min(0)).astype(int) - 1, 0, [w, h])
  x1, y1 = np.clip(np.ceil(box.max(0)).astype(int) + 2, 0, [w, h])
  return int(y0), int(y1), int(x0), int(x1)


def skin_window(frame_hw: tuple[int, int], a_2x3, size: int, face_type: str | None = None):
  """((y0, y1, x0, x1), weights) of carry_tone's reach in a frame: the face type's face ellipse
  in crop fractions (face_ellipse), grown TONE_GROW times above and to the sides and TONE_BELOW
  times below its centre, mapped into the frame by the inverse of a (frame -> crop pixels) with
  a smooth edge; weights (y1 - y0, x1 - x0) over the frame's box round it (a photo's far pixels
  are never computed)."""
  box = _skin_box(frame_hw, a_2x3, size, face_type)
  return box, _reach_weights(*_crop_fractions(box, a_2x3, size), face_type)


def _reach_weights(u, v, face_type: str | None) -> np.ndarray:
  """skin_window's weights at crop fractions (u, v)."""
  e, rx, up, down = _tone_reach(face_type)
  return _smooth_inside(u, v, e, rx, np.where(v > e["cy"], down, up), 0.08)


def _crop_fractions(box, a_2x3, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(u, v): where each frame pixel of box (y0, y1, x0, x1) falls in the crop, in fractions of its
  side (a maps frame pixels to crop pixels)."""
  y0, y1, x0, x1 = box
  ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
  a = np.asarray(a_2x3, np.float64)
  return ((a[0, 0] * xs + a[0, 1] * ys + a[0, 2] + 0.5) / size,
          (a[1, 0] * xs + a[1, 1] * ys + a[1, 2] + 0.5) / size)


def _joined_skin(region, keyed, scale: float, pasted) -> np.ndarray:
  """(h, w) bool: the `keyed` pixels of `region` joined to the face, regions of them split where
  a step to a neighbour exceeds TONE_EDGE x `scale`, kept where TONE_SHARE of a region or more is
  `pasted` (else the one most under it: skin all round), grown by TONE_RIM pixels."""
  from scipy import ndimage
  dy = np.abs(np.diff(region, axis=0)).max(-1)  # the step to the pixel below, in any channel
  dx = np.abs(np.diff(region, axis=1)).max(-1)  # and to the right
  step = np.zeros(region.shape[:2], np.float32)  # each pixel's largest step to a neighbour
  step[1:] = np.maximum(step[1:], dy)
  step[:-1] = np.maximum(step[:-1], dy)
  step[:, 1:] = np.maximum(step[:, 1:], dx)
  step[:, :-1] = np.maximum(step[:, :-1], dx)
  labels, n = ndimage.label(keyed & (step < TONE_EDGE * scale))
  size = np.bincount(labels.ravel(), minlength=n + 1)[1:]
  under = np.bincount(labels[pasted].ravel(), minlength=n + 1)[1:]
  keep = under >= TONE_SHARE * np.maximum(size, 1)
  if n and not keep.any() and under.max() > 0:
    keep[np.argmax(under)] = True
  joined = np.concatenate([[False], keep])[labels]
  return ndimage.binary_dilation(joined, iterations=TONE_RIM) if TONE_RIM else joined


def carry_tone(frame_HxWx3, face_SxSx3, weight_SxSx1, a_2x3, face_type: str | None = None) -> np.ndarray:
  """The frame (floats in [0, 1]) with its skin round the crop in the swap's tone, float32: each
  channel of the skin's pixels (TONE_KEY, TONE_LUMA, joined to the face: _joined_skin; one frame
  pixel past them half-weighted) inside skin_window is scaled by the ratio of the swap's mean
  colour to the frame's own under the pasted weights (the crop's feathered, faded mask). A face
  decoded in the frame's own tone leaves the frame as it is."""
  from encdec_jax import align
  frame = np.asarray(frame_HxWx3, np.float32)
  s = face_SxSx3.shape[0]
  w = np.asarray(weight_SxSx1, np.float32)
  if w.sum() < 1e-3:
    return frame
  own = align.crop(frame, a_2x3, s)
  ratio = ((w * face_SxSx3).sum((0, 1)) / w.sum()) / np.maximum((w * own).sum((0, 1)) / w.sum(), 1e-3)
  ratio = np.clip(ratio, 0.2, 5.0)
  if np.all(np.abs(ratio - 1) < 1e-6):
    return frame
  skin = np.median(own[w[..., 0] > 0.5], 0) if (w > 0.5).any() else (w * own).sum((0, 1)) / w.sum()
  box = _skin_box(frame.shape[:2], a_2x3, s, face_type)  # skin_window's, its crop fractions kept
  u, v = _crop_fractions(box, a_2x3, s)
  near = _reach_weights(u, v, face_type)
  y0, y1, x0, x1 = box
  region = frame[y0:y1, x0:x1]
  key = np.exp(-((_chromaticity(region) - _chromaticity(skin)) ** 2).sum(-1) / (2 * TONE_KEY ** 2))
  luma = region.sum(-1) / max(float(skin.sum()), 1e-3)
  key = key * ((luma > TONE_LUMA[0]) & (luma < TONE_LUMA[1]))
  inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
  pasted = inside & (w[np.clip((v * s).astype(int), 0, s - 1), np.clip((u * s).astype(int), 0, s - 1), 0] > 0.5)
  key = key * _joined_skin(region, key > 0.5, max(float(skin.max()), 1e-3), pasted)
  p = np.pad(key, 1, mode="edge")
  edge = np.maximum(0.5 * np.maximum.reduce([p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]) - key, 0.0)
  key, edge = np.where(near * key < 0.01, 0.0, near * key), np.where(near * edge < 0.01, 0.0, near * edge)
  # Skin scaled by the ratio (its shading kept); a pixel next to skin, half skin (the head's
  # antialiased edge), gains half the skin's change, not a scaled background.
  change = (ratio - 1) * (key[..., None] * region + edge[..., None] * skin)
  out = frame.copy()
  out[y0:y1, x0:x1] = np.clip(region + change, 0.0, 1.0)
  return out


def _reach(frame_hw: tuple[int, int], a_2x3, size: int, face_type: str | None = None):
  """(y0, y1, x0, x1): a box of the frame holding every pixel into_frames may change, the crop's
  square mapped into the frame (align.paste_back's box, one crop pixel round it) and carry_tone's
  reach (skin_window's box), with one frame pixel to spare."""
  from encdec_jax import align
  h, w = frame_hw
  lo, hi = -2, size + 1  # one crop pixel beyond paste_back's box
  corners = align.apply(align.invert(a_2x3), [[lo, lo], [hi, lo], [lo, hi], [hi, hi]])
  ty0, ty1, tx0, tx1 = _skin_box(frame_hw, a_2x3, size, face_type)
  x0 = max(0, min(int(np.floor(corners[:, 0].min())) - 1, tx0))
  y0 = max(0, min(int(np.floor(corners[:, 1].min())) - 1, ty0))
  x1 = min(w, max(int(np.ceil(corners[:, 0].max())) + 2, tx1))
  y1 = min(h, max(int(np.ceil(corners[:, 1].max())) + 2, ty1))
  return y0, max(y1, y0), x0, max(x1, x0)


def into_frames(frames_BxHxWx3, faces_BxSxSx3, masks_BxSxSx1, transforms_Bx2x3,
                sigma: float = FEATHER, face_type: str | None = None, tone: bool = True) -> np.ndarray:
  """The decoded crops pasted back into their frames (align.paste_back): each crop's mask is
  feathered at the crop's resolution and faded to 0 at the circle inscribed in the crop
  (border_fade), warped into the frame by the inverse of its transform (frame pixels -> crop
  pixels) with the face, and m * face + (1 - m) * frame taken. With `tone`, the frame's skin
  round the crop first takes the swap's tone (carry_tone; `face_type`: the crops', for its
  reach); outside the warped mask and that reach every pixel is the frame's.
  uint8 frames give uint8, float ones float32."""
  from encdec_jax import align
  m = feather(masks_BxSxSx1, sigma) * border_fade(np.shape(masks_BxSxSx1)[1])
  faces = np.asarray(faces_BxSxSx3, np.float32)
  frames = np.asarray(frames_BxHxWx3)

  def one(f, y, k, a):
    if not tone:
      return align.paste_back(f, y, k, a)
    if f.dtype != np.uint8:
      return align.paste_back(carry_tone(to_unit_float(f), y, k, a, face_type), y, k, a)
    # uint8 (a photo): only the box that the tone and the paste can reach is made float and
    # written back; every other pixel is the frame's, as u8 -> float -> round would give.
    (y0, y1, x0, x1) = _reach(f.shape[:2], a, y.shape[0], face_type)
    a_box = np.asarray(a, np.float64).copy()
    a_box[:, 2] += a_box[:, 0] * x0 + a_box[:, 1] * y0  # box pixels -> crop pixels
    toned = carry_tone(to_unit_float(f[y0:y1, x0:x1]), y, k, a_box, face_type)
    g = align.paste_back(toned, y, k, a_box)
    out = f.copy()
    out[y0:y1, x0:x1] = np.clip(np.round(g * 255), 0, 255).astype(np.uint8)
    return out

  return np.stack([one(f, y, k, a) for f, y, k, a in zip(frames, faces, m, transforms_Bx2x3)]
                  ).reshape(frames.shape)


def choose_mask(learned_BxHxWx1, data_masks_BxHxWxC=None, resolution: int | None = None,
                batch: int | None = None, face_type: str | None = None) -> np.ndarray:
  """The mask `convert` uses: the model's learned mask if it has one, else the data's face mask
  (channel 0 of the stored masks), else the face type's soft face ellipse (needs resolution and
  batch). With both a learned mask and the data's, their product (DeepFaceLab's
  "learned-prd*dst"): where decoder j draws its own face and the frame shows its face, so neither
  j's hair line nor the frame's hair is pasted."""
  if learned_BxHxWx1 is not None:
    learned = np.clip(np.asarray(learned_BxHxWx1, np.float32), 0.0, 1.0)
    if data_masks_BxHxWxC is not None:
      return learned * to_unit_float(data_masks_BxHxWxC)[..., :1]
    return learned
  if data_masks_BxHxWxC is not None:
    return to_unit_float(data_masks_BxHxWxC)[..., :1]
  return np.broadcast_to(soft_ellipse(resolution, face_type), (batch, resolution, resolution, 1))
