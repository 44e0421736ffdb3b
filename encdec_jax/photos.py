"""From photos to aligned crops and back: detection, extraction, and swaps pasted into photos.

Extract (experiments.extract): every face the detector finds in a photo is aligned to the
template of encdec_jax/align.py and cut out as a training crop, with its alignment (source file,
box, landmarks, transform, detector score) in a JSON file next to it. Convert on photos
(experiments.swap): each face is aligned the same way, swapped and converted (blended inside the
face mask), and warped back into the photo with the inverse transform, so everything outside the
mask stays the photo's own pixels.

The detector is MTCNN (Zhang et al., 2016; the `mtcnn` package, MIT, weights inside its wheel:
nothing is downloaded). It gives a box, a score and five landmarks (eyes, nose, mouth corners);
the mouth corners' mean is the template's mouth centre.

Outcomes a report lists, per photo (PROBLEMS):
| problem | what happens |
|---|---|
| `unreadable` | not an image, truncated, not a regular file: skipped |
| `too_large` | a header claiming more than image_files.MAX_PIXELS (64 MP): refused before decoding |
| `no_face` | nothing detected: skipped |
| `too_small` | faces whose box's longer side is below --min_face: not used (the others are) |
| `several_faces` | every face used, or only the largest with --largest |
| `low_score` | faces whose detector score is below --min_score: not used (the others are) |
| `exif_rotated` | rotated upright first (the crops and the written photo are upright) |
| `unsupported` | a file of another type (.gif, .heic, .tiff, ...): listed, not opened |
"""
from __future__ import annotations

import dataclasses
import os
import stat

import numpy as np

from encdec_jax import align
from encdec_jax.data import image_files
from encdec_jax.pixels import to_unit_float

PROBLEMS = ("unreadable", "too_large", "no_face", "too_small", "low_score", "several_faces",
            "exif_rotated", "unsupported")


def list_inputs(folder: str) -> tuple[list[str], list[str]]:
  """(image names, other files' names) of a folder, sorted; hidden files are neither."""
  names, other = [], []
  for n in sorted(os.listdir(folder)):
    if n.startswith("."):
      continue
    if n.lower().endswith(image_files.IMAGE_EXTENSIONS):
      names.append(n)
    elif os.path.isfile(os.path.join(folder, n)):
      other.append(n)
  return names, other


def unsupported_records(other: list[str], **fields) -> list[dict]:
  """The report's records of files that are not images of a supported type."""
  why = f"not one of {', '.join(image_files.IMAGE_EXTENSIONS)}: not opened"
  return [{"file": image_files.printable(n), **fields, "problems": {"unsupported": why}} for n in other]


def is_rotation(note: str) -> bool:
  """Whether a load note says an EXIF rotation was applied (not that an invalid one was ignored)."""
  return note.startswith("EXIF orientation") and note.endswith("applied")


@dataclasses.dataclass(frozen=True)
class Face:
  box: tuple            # (x0, y0, x1, y1) photo pixels
  points: np.ndarray    # (5, 2): left eye, right eye, nose, mouth left, mouth right (image left first)
  score: float

  @property
  def size(self) -> float:
    """The box's longer side, in photo pixels: what --min_face is compared with."""
    return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

  def landmarks(self) -> np.ndarray:
    """(4, 2) in align.LANDMARK_NAMES order: eyes, nose, mouth centre."""
    p = np.asarray(self.points, np.float64)
    return np.stack([p[0], p[1], p[2], (p[3] + p[4]) / 2])


THRESHOLD = 0.8  # MTCNN's own final-stage default; its first two stages keep 0.6 and 0.7 below it
DETECT_SIDE = 1280  # larger photos are searched at this longer side (Lanczos), boxes scaled back


class Mtcnn:
  """The MTCNN detector (package `mtcnn`): photo (H, W, 3) uint8 RGB -> [Face], largest first.

  `threshold`: the score a face needs at the last stage (the stages before it need at most that).
  The synthetic composites' cartoon faces score lower than real ones: 46% of 80 are found at
  0.8, 82% at 0.3, with no false face among them; on the astronaut photo 0.3 adds one
  23x29-px false face, which --min_face=40 drops (tests/photos_test.py)."""

  def __init__(self, threshold: float = THRESHOLD, detect_side: int = DETECT_SIDE):
    if not 0 < threshold < 1:
      raise ValueError(f"--threshold={threshold}; must be in (0, 1)")
    self._kw = {"threshold_pnet": min(0.6, threshold), "threshold_rnet": min(0.7, threshold),
                "threshold_onet": threshold}
    self.detect_side = detect_side
    import importlib.metadata
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mtcnn import MTCNN
    self._net = MTCNN(device="CPU:0")
    self.version = f"mtcnn {importlib.metadata.version('mtcnn')}"

  def __call__(self, photo_u8: np.ndarray) -> list[Face]:
    """Faces in photo pixels. A photo longer than detect_side is searched shrunk to it (the
    detection time grows with the pixels), its faces scaled back."""
    from PIL import Image
    h, w = photo_u8.shape[:2]
    f = min(1.0, self.detect_side / max(h, w))
    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    img = photo_u8 if f == 1.0 else np.asarray(
        Image.fromarray(photo_u8).resize((sw, sh), Image.Resampling.LANCZOS))
    rows = self._net.detect_faces(np.ascontiguousarray(img), box_format="xyxy",
                                  output_type="numpy", **self._kw)
    rows = np.asarray(rows, np.float64).reshape(-1, 16).copy()
    if f != 1.0:  # back to photo pixels, per axis (pixel centres: x = (x' + 0.5) / fx - 0.5)
      scale = np.array([sw / w, sh / h])
      rows[:, 1:5] = rows[:, 1:5] / np.tile(scale, 2)
      rows[:, 6:16] = (rows[:, 6:16] + 0.5) / np.repeat(scale, 5) - 0.5
    # A row: image index, x0, y0, x1, y1, score, the five x's, the five y's (mtcnn/utils/bboxes.py).
    faces = [Face(tuple(float(v) for v in r[1:5]), np.asarray(r[6:16], np.float64).reshape(2, 5).T,
                  float(r[5])) for r in rows]
    return sorted(faces, key=lambda f: -f.size)


def load_photo(path: str) -> tuple[np.ndarray, list[str]]:
  """-> ((H, W, 3) uint8 RGB, notes), EXIF orientation applied; ValueError with the reason for a
  file that must be skipped (as the image folders decide: encdec_jax/data/image_files.py), a
  image_files.TooLarge for one over the pixel limit."""
  try:
    mode = os.stat(path).st_mode
  except OSError as e:
    raise ValueError(f"cannot be read ({e.strerror})") from None
  if not stat.S_ISREG(mode):
    raise ValueError("not a regular file (a folder, FIFO, socket or device): not opened")
  im, notes = image_files.open_rgb(path)
  return np.asarray(im, np.uint8).copy(), notes


@dataclasses.dataclass
class Found:
  """The faces of one photo to use, and what the report says about it."""
  faces: list                   # [Face] to use, largest first
  problems: dict                # problem name -> detail
  detected: int


def choose_faces(detected: list[Face], min_face: float, largest: bool, min_score: float = 0.0) -> Found:
  """Filters the detector's faces: those below min_face or min_score are dropped (reported), and
  of the rest all are kept, or only the largest with `largest`."""
  faces = sorted(detected, key=lambda f: -f.size)
  problems = {}
  small = [f for f in faces if f.size < min_face]
  unsure = [f for f in faces if f.size >= min_face and f.score < min_score]
  keep = [f for f in faces if f.size >= min_face and f.score >= min_score]
  if not faces:
    problems["no_face"] = "no face detected"
  if small:
    problems["too_small"] = (f"{len(small)} face(s) below --min_face={min_face:g} px "
                             f"(box sides {', '.join(f'{f.size:.0f}' for f in small)} px)")
  if unsure:
    problems["low_score"] = (f"{len(unsure)} face(s) below --min_score={min_score:g} "
                             f"(scores {', '.join(f'{f.score:.3f}' for f in unsure)})")
  if len(keep) > 1:
    problems["several_faces"] = (f"{len(keep)} faces: " + ("the largest used (--largest)" if largest
                                                           else "all used"))
  return Found(keep[:1] if largest else keep, problems, len(faces))


def residual(face: Face, size: int, face_type: str = align.DEFAULT_FACE_TYPE) -> float:
  """How far the face's landmarks are from the template after alignment: RMS distance in units
  of the "head" template (a fraction of its crop side), so every face type gives the same value.
  A similarity cannot bend a face, so a profile, an odd detection or a face that is not one
  leaves a large residual."""
  a = align.align_transform(face.landmarks(), size, face_type)
  lm = face.landmarks()
  moved = lm @ a[:, :2].T + a[:, 2]
  rms = np.sqrt(((moved - align.template_px(size, face_type)) ** 2).sum(1).mean()) / size
  return float(rms / align.zoom_of(face_type))


def alignment(face: Face, size: int, source: str, detector: str,
              face_type: str = align.DEFAULT_FACE_TYPE) -> dict:
  """The JSON written next to a crop: where it came from and how it was cut."""
  a = align.align_transform(face.landmarks(), size, face_type)
  return {"source": source, "detector": detector, "score": round(face.score, 5),
          "residual": round(residual(face, size, face_type), 5),
          "box": [round(v, 2) for v in face.box],
          "points": np.round(face.points, 2).tolist(),
          "landmarks": np.round(face.landmarks(), 2).tolist(),
          "size": size, "transform": np.round(a, 6).tolist(), "face_type": face_type,
          "template": align.template(face_type).tolist()}


def paste_swap(photo_u8: np.ndarray, face: Face, decode, size: int, blend: bool = True,
               face_type: str = align.DEFAULT_FACE_TYPE) -> np.ndarray:
  """The photo with one face swapped: aligned crop (of the run's face type) -> decode(crop
  (1, S, S, 3) floats) -> (decoded (1, S, S, 3), mask (1, S, S, 1) or None) -> pasted back by
  convert.into_frames, the path synthetic frames take. Without `blend` the whole crop is
  pasted, up to the circle inscribed in it (convert.border_fade), and the photo's skin round it
  keeps its own tone (convert.carry_tone)."""
  from encdec_jax import convert
  a = align.align_transform(face.landmarks(), size, face_type)
  x = to_unit_float(align.crop(photo_u8, a, size)[None])
  rgb, mask = decode(x)
  if not blend:
    mask = np.pad(np.ones((1, size - 2, size - 2, 1), np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return convert.into_frames(photo_u8[None], rgb, mask, a[None], face_type=face_type, tone=blend)[0]


def is_crop(path: str, resolution: int) -> bool:
  """--input_kind=auto: an aligned crop (not a photo) if extract wrote an alignment next to it, or
  if it is square and at most 4x the run's resolution on a side."""
  from PIL import Image
  if os.path.exists(os.path.splitext(path)[0] + ".json") or not os.path.isfile(path):
    return True  # not a regular file: the crop loader reports it without opening it
  try:
    with Image.open(path) as im:
      w, h = im.size
  except Exception:  # noqa: BLE001 - unreadable: the loader reports it
    return True
  return w == h and w <= 4 * resolution


def output_problem(input_dir: str, output_dir: str, what: str) -> str | None:
  """Why `output_dir` cannot take a command's outputs, or None: it is --input or inside it (the
  outputs would mix with the inputs), or it already holds files (an earlier run's outputs, or
  a training folder: a name could replace one of them, and the report would replace theirs).
  Extract and swap write into an empty or new folder only."""
  src, dst = os.path.realpath(input_dir), os.path.realpath(output_dir)
  if dst == src or dst.startswith(src + os.sep):
    where = "the input folder" if dst == src else "inside --input"
    return (f"--output={output_dir!r} is {where}; choose a folder outside it ({what} would "
            "mix with the inputs)")
  if os.path.isdir(dst):
    held = sorted(n for n in os.listdir(dst))
    if held:
      return (f"--output={output_dir!r} already holds {len(held)} file(s) ({', '.join(held[:3])}"
              f"{', ...' if len(held) > 3 else ''}); {what} go into an empty or new folder only, "
              "so nothing there is replaced: choose another folder")
  elif os.path.exists(dst):
    return f"--output={output_dir!r} is a file, not a folder"
  return None


def output_names(names: list[str]) -> dict[str, str]:
  """Each input's PNG name: its stem + .png, or its whole name + .png where stems collide
  (x.png and x.jpg -> x.png.png and x.jpg.png); where that still collides (x.png.png is also
  an input), the later names in sorted order get -2, -3, ... before the .png. Distinct even
  ignoring case (a Mac's or Windows' file system), so no output replaces another."""
  stems: dict[str, int] = {}
  for n in names:
    stem = os.path.splitext(n)[0].lower()
    stems[stem] = stems.get(stem, 0) + 1
  first = {n: (os.path.splitext(n)[0] if stems[os.path.splitext(n)[0].lower()] == 1 else n) + ".png"
           for n in names}
  counts: dict[str, int] = {}
  for v in first.values():
    counts[v.lower()] = counts.get(v.lower(), 0) + 1
  used = {v.lower() for v in first.values() if counts[v.lower()] == 1}
  out = {}
  for n in sorted(names):
    v = first[n]
    if counts[v.lower()] > 1:
      k, base = 1, v[:-len(".png")]
      while v.lower() in used:
        k += 1
        v = f"{base}-{k}.png"
      used.add(v.lower())
    out[n] = v
  return {n: out[n] for n in names}


def problem_of(e: ValueError) -> str:
  """The report's name for a photo that load_photo refused."""
  return "too_large" if isinstance(e, image_files.TooLarge) else "unreadable"


def summarize(records: list[dict]) -> dict:
  """{problem: [file, ...]} over the per-file records' `problems`, every PROBLEMS key present."""
  out = {p: [] for p in PROBLEMS}
  for r in records:
    for p in r.get("problems", {}):
      out[p].append(r["file"])
  return out


def problem_lines(records: list[dict]) -> list[str]:
  """What a command prints after its summary: each problem with its count, then its files and
  reasons."""
  lines = []
  for p, files in summarize(records).items():
    if files:
      lines.append(f"  {p}: {len(files)}")
      lines += [f"    {r['file']}: {r['problems'][p]}" for r in records if p in r["problems"]]
  return lines
