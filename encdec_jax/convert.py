"""Convert: a swap as a user sees it, the decoded face blended into the frame inside a face mask.

Deepfakes' convert step pastes the decoder's output into the source frame inside a face mask, so
hair and background stay the frame's (the hairstyle-visualizer use: your face in a photo of a
hairstyle). The model sees an aligned crop of the frame (encdec_jax/align.py); `into_frames`
pastes its decoded crop back into the frame by the inverse of the crop's transform, inside the
feathered mask: synthetic frames (evaluation, previews, the sweep's swap grid) and photos
(`experiments.swap`, encdec_jax/photos.py) take this one path, so what is measured is what is
shown. `convert` blends in the crop itself, where there is no frame (a folder of crops).

The mask, in order of preference: the model's learned mask (decoders with `model.learn_mask`
predict their own face's mask), the data's face mask (synthetic faces store it), else a soft
ellipse over the face of an aligned crop (image folders, photos: FACE_ELLIPSE). Its edge is
feathered by a Gaussian blur, so the seam is not a one-pixel step.
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


def soft_ellipse(resolution: int, face_type: str | None = None, feather: float = 0.08) -> np.ndarray:
  """(R, R, 1) in [0, 1]: 1 inside the face type's face ellipse (face_ellipse), a smooth ramp
  `feather` x R wide at its edge, 0 outside."""
  e = face_ellipse(face_type)
  cx, cy, rx, ry = e["cx"], e["cy"], e["rx"], e["ry"]
  t = (np.arange(resolution) + 0.5) / resolution
  y, x = np.meshgrid(t, t, indexing="ij")
  d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1.0  # < 0 inside
  s = np.clip(0.5 - d * min(rx, ry) / feather, 0.0, 1.0)
  return (s * s * (3 - 2 * s))[..., None].astype(np.float32)


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


def into_frames(frames_BxHxWx3, faces_BxSxSx3, masks_BxSxSx1, transforms_Bx2x3,
                sigma: float = FEATHER) -> np.ndarray:
  """The decoded crops pasted back into their frames (align.paste_back): each crop's mask is
  feathered at the crop's resolution and faded to 0 at the circle inscribed in the crop
  (border_fade), warped into the frame by the inverse of its transform (frame pixels -> crop
  pixels) with the face, and m * face + (1 - m) * frame taken; outside the warped mask every
  pixel is the frame's.
  uint8 frames give uint8, float ones float32."""
  from encdec_jax import align
  m = feather(masks_BxSxSx1, sigma) * border_fade(np.shape(masks_BxSxSx1)[1])
  faces = np.asarray(faces_BxSxSx3, np.float32)
  frames = np.asarray(frames_BxHxWx3)
  return np.stack([align.paste_back(f, y, k, a) for f, y, k, a in zip(frames, faces, m, transforms_Bx2x3)]
                  ).reshape(frames.shape)


def choose_mask(learned_BxHxWx1, data_masks_BxHxWxC=None, resolution: int | None = None,
                batch: int | None = None, face_type: str | None = None) -> np.ndarray:
  """The mask `convert` uses: the model's learned mask if it has one, else the data's face mask
  (channel 0 of the stored masks), else the face type's soft face ellipse (needs resolution and
  batch)."""
  if learned_BxHxWx1 is not None:
    return np.clip(np.asarray(learned_BxHxWx1, np.float32), 0.0, 1.0)
  if data_masks_BxHxWxC is not None:
    return to_unit_float(data_masks_BxHxWxC)[..., :1]
  return np.broadcast_to(soft_ellipse(resolution, face_type), (batch, resolution, resolution, 1))
