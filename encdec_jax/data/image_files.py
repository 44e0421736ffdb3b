"""A user's image file as 8-bit RGB pixels, whatever Pillow can decode: EXIF orientation applied,
16-bit and float images scaled, alpha composited over black, decompression bombs refused before
decoding, and reasons that name the file but not the folders above it (reports get shared).
`folders` (training crops) and `photos` (whole photos) read images through it."""
from __future__ import annotations

import os
import warnings

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_PIXELS = 64 * 1024 * 1024   # a header claiming more is refused before decoding


def printable(name: str) -> str:
  """A file name as text, whatever its bytes: one that is not valid UTF-8 keeps \\x escapes."""
  return os.fsencode(name).decode("utf-8", "backslashreplace")


class TooLarge(ValueError):
  """An image whose header claims more than MAX_PIXELS (or Pillow's own bomb limit)."""


def open_rgb(path: str):
  """-> (PIL RGB image, notes on conversions): decoded whole, EXIF orientation applied, converted
  to 8-bit RGB (encdec_jax/data/folders.py's table). Raises ValueError with the reason when the file must be
  skipped: unreadable, not an image, or a header claiming more than MAX_PIXELS."""
  from PIL import Image, ImageOps
  notes = []
  with warnings.catch_warnings():
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
      with Image.open(path) as im:
        w, h = im.size  # header only
        if w * h > MAX_PIXELS:
          raise TooLarge(f"header claims {w}x{h} pixels, over the {MAX_PIXELS} limit")
        im.load()  # decodes: truncated or corrupt data fails here
        orientation = _exif_orientation(im)
        if orientation in range(2, 9):
          im = ImageOps.exif_transpose(im)
          notes.append(f"EXIF orientation {orientation} applied")
        elif orientation not in (None, 1):
          notes.append(f"EXIF orientation {orientation!r} is not valid (1-8): ignored")
        im = _to_rgb(im, notes)
    except ValueError:
      raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
      raise TooLarge(f"header claims too many pixels (decompression bomb): {_no_path(e, path)}") from None
    except (OSError, SyntaxError) as e:
      if "truncated" in str(e):  # the header read, the pixel data ends early
        raise ValueError("truncated: the image data ends before its last pixel") from None
      raise ValueError(f"not a readable image ({type(e).__name__}: {_no_path(e, path)})") from None
  return im, notes


def _no_path(e: Exception, path: str) -> str:
  """PIL's message without the folders above the file (reports get shared; a path can name the
  user): the file's name stays."""
  msg = str(e)
  for p in sorted({path, os.path.abspath(path), os.path.realpath(path)}, key=len, reverse=True):
    msg = msg.replace(p, os.path.basename(path))
  return msg


def min_side(resolution: int, min_size: int) -> int:
  """The smallest short side an image may have (config.data.min_size; 0: max(8, resolution/2))."""
  return min_size or max(8, resolution // 2)


def load_image(path: str, resolution: int, min_size: int) -> tuple[np.ndarray, list[str]]:
  """-> (uint8 (resolution, resolution, 3), notes on conversions). Raises ValueError with the
  reason when the file must be skipped."""
  from PIL import Image
  im, notes = open_rgb(path)
  w, h = im.size
  if min(w, h) < min_size:
    raise ValueError(f"too small: {w}x{h}, short side below min_size={min_size}")
  if w != h:
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    notes.append(f"centre-cropped from {w}x{h}")
  if im.size != (resolution, resolution):
    im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
  return np.asarray(im, dtype=np.uint8).copy(), notes


def _exif_orientation(im):
  try:
    return im.getexif().get(0x0112)
  except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation
    return None


def _to_rgb(im, notes):
  from PIL import Image
  mode = im.mode
  if mode == "RGB":
    return im
  if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
    a = np.asarray(im, dtype=np.float64)
    top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
    a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    notes.append(f"{mode} scaled to 8 bits")
    return Image.fromarray(a, "L").convert("RGB")
  if mode == "P":
    im = im.convert("RGBA")
    mode = "RGBA"
    notes.append("palette expanded")
  if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
    rgba = im.convert("RGBA")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    notes.append(f"{mode}: alpha composited over black")
    return Image.alpha_composite(black, rgba).convert("RGB")
  notes.append(f"{mode} converted to RGB")
  return im.convert("RGB")
