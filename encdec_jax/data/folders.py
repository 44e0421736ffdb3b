"""The user's own aligned face crops: ROOT/<identity>/*.{png,jpg,jpeg,webp,bmp}, through TFDS.

Every file's fate is decided by `scan()` before any training, and written to the run's
`data_report.json`:

| file | outcome |
|---|---|
| decodes as RGB, at least min_size px on its short side | used as is |
| grayscale (L), 16-bit (I;16), 32-bit int/float (I, F), CMYK, YCbCr | converted to 8-bit RGB |
| RGBA, LA, palette with transparency (P) | alpha composited over black, then RGB |
| EXIF orientation tag | rotated upright (ImageOps.exif_transpose) |
| not square | centre-cropped to a square |
| any size above min_size | resized to data.resolution (Lanczos) |
| truncated or corrupt, not an image despite its name | skipped, reason logged |
| header claims more than image_files.MAX_PIXELS (decompression bomb) | skipped before decoding |
| short side below min_size | skipped (upscaling it would be mostly blur) |
| byte-identical to an earlier file of the same identity | skipped as a duplicate |
| byte-identical to a file of another identity | skipped in both (which identity is it?) |
| other extensions, hidden files, sub-sub-folders | ignored, counted |
| a FIFO, socket or device named like an image | skipped as not a regular file, never opened (a FIFO would block) |
| a broken link, or a file that cannot be read | skipped, with the reason |
| a name that is not valid UTF-8 | used as any other file; listed with \\x escapes |
| an identity folder left with fewer than needed images, or only one identity | ConfigError naming it |

Files are never executed or unpickled: images are decoded by Pillow (encdec_jax/data/image_files.py),
examples stored by TFDS.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat

import numpy as np

from encdec_jax.data.image_files import IMAGE_EXTENSIONS, load_image, min_side, printable
from encdec_jax.data.tfds_info import dataset_info

VERSION = "1.3.0"  # 1.3.0: implausible landmarks fall back to the template, each crop's source kept;
                   # 1.2.0: landmarks per crop, face/eye/mouth masks from them (data/regions.py);
                   # 1.1.0: the face mask is convert.FACE_ELLIPSE (was wider)


class DataError(ValueError):
  """The image folders cannot give a usable dataset; the message names the folder or file."""


def identity_folders(root: str) -> list[str]:
  """Sorted names of the identity sub-folders of `root` (hidden ones ignored)."""
  if not os.path.isdir(root):
    raise DataError(f"data.root={root!r} is not a directory")
  return sorted(d for d in os.listdir(root)
                if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))


def crop_landmarks(path: str, resolution: int, square: bool = True,
                   face_type: str = "whole_face") -> tuple[np.ndarray, str]:
  """(landmarks (4, 2) in pixels of the crop at `resolution`, where from): "json", those of the
  JSON experiments.extract wrote beside the crop (through its transform, scaled from its size);
  else the template's and why (no JSON, a malformed one, align.landmarks_problem). `square`:
  whether the image was square (a centre-cropped one no longer fits its JSON)."""
  from encdec_jax import align
  meta = os.path.splitext(path)[0] + ".json"
  template = align.template_px(resolution, face_type).astype(np.float32)
  if not os.path.exists(meta):
    return template, "no landmark file"
  if not square:
    return template, "centre-cropped: its landmark file no longer fits"
  try:
    with open(meta) as f:
      info = json.load(f)
    a = np.asarray(info["transform"], np.float64).reshape(2, 3)
    lm = np.asarray(info["landmarks"], np.float64).reshape(4, 2)
    size = float(info["size"])
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return template, "landmark file unreadable or malformed"
  if not (size > 0 and np.isfinite(a).all() and np.isfinite(lm).all()):
    return template, "landmark file with non-finite values"
  crop = ((lm @ a[:, :2].T + a[:, 2]) + 0.5) * resolution / size - 0.5  # photo px -> crop px
  why = align.landmarks_problem(crop, resolution, face_type)
  if why:
    return template, f"implausible landmarks: {why}"
  return crop.astype(np.float32), "json"


@dataclasses.dataclass
class Scan:
  root: str
  identities: list            # identity folder names, index = identity id
  files: dict                 # identity name -> list of accepted relative paths (sorted)
  skipped: list               # [relative path, reason]
  converted: list             # [relative path, note]
  ignored: list               # relative paths (not images by extension, hidden, nested)

  def summary(self) -> str:
    per = ", ".join(f"{k}: {len(v)}" for k, v in self.files.items())
    return (f"{self.root}: {per} images used; {len(self.converted)} converted, "
            f"{len(self.skipped)} skipped, {len(self.ignored)} ignored")

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def json_face_type(info: dict) -> str | None:
  """The face type an extract JSON says its crop was cut as: its `face_type`, else "head" for
  the JSONs written before face types (their `template` is the head template), else None."""
  if isinstance(info.get("face_type"), str):
    return info["face_type"]
  return "head" if "template" in info else None


def check_face_types(root: str, s: "Scan", face_type: str) -> None:
  """DataError naming the crops whose extract JSON says another face type than the run's: a
  model trains on one framing, and the convert pastes back by it."""
  wrong = []
  for files in s.files.values():
    for rel in files:
      meta = os.path.splitext(os.path.join(root, rel))[0] + ".json"
      try:
        with open(meta) as f:
          got = json_face_type(json.load(f))
      except (OSError, ValueError, AttributeError):
        continue  # no JSON or a malformed one: the template's landmarks (crop_landmarks says why)
      if got is not None and got != face_type:
        wrong.append(f"{printable(rel)} ({got})")
  if wrong:
    raise DataError(f"{len(wrong)} crop(s) under {root} were extracted as another face type than "
                    f"config.data.face_type={face_type!r}: {', '.join(wrong[:3])}"
                    f"{', ...' if len(wrong) > 3 else ''}; extract them again with "
                    f"--face_type={face_type} or set config.data.face_type to theirs")


def fingerprint(root: str, resolution: int, min_size: int, face_type: str = "whole_face") -> tuple[str, list]:
  entries = []
  for ident in identity_folders(root):
    for dirpath, dirnames, names in os.walk(os.path.join(root, ident)):
      dirnames.sort()
      for name in sorted(names):
        p = os.path.join(dirpath, name)
        try:
          st = os.stat(p)
          entry = (st.st_size, int(st.st_mtime_ns))
        except OSError:  # a broken link: its name still counts
          entry = (-1, -1)
        entries.append((printable(os.path.relpath(p, root)), *entry))
  h = hashlib.sha1(json.dumps([os.path.abspath(root), resolution, min_size, VERSION, face_type, entries])
                   .encode()).hexdigest()[:12]
  return h, entries


def scan(root: str, resolution: int, min_size: int, cache_dir: str = "") -> Scan:
  """Decides every file's outcome (see the module table), decoding each image once. The result
  is cached in `cache_dir` under a fingerprint of the folder listing (names, sizes, mtimes)."""
  fp, _ = fingerprint(root, resolution, min_size)
  cache = os.path.join(cache_dir, f"face_folders_scan_{fp}.json") if cache_dir else ""
  if cache and os.path.exists(cache):
    with open(cache) as f:
      return Scan(**json.load(f))
  idents = identity_folders(root)
  files, skipped, converted, ignored = {}, [], [], []
  first_seen: dict[str, tuple[str, str]] = {}   # sha256 -> (identity, rel path)
  cross_dupes: set[str] = set()
  try:
    from tqdm.auto import tqdm
  except ImportError:  # pragma: no cover
    tqdm = lambda x, **k: x  # noqa: E731
  for ident in idents:
    files[ident] = []
    folder = os.path.join(root, ident)
    for name in tqdm(sorted(os.listdir(folder)), desc=f"checking {ident}", leave=False,
                     disable=None):
      rel = os.path.join(ident, name)
      path = os.path.join(folder, name)
      if name.startswith(".") or os.path.isdir(path) or not name.lower().endswith(IMAGE_EXTENSIONS):
        ignored.append(rel)
        continue
      try:
        mode = os.stat(path).st_mode
      except OSError as e:
        skipped.append([rel, f"cannot be read ({e.strerror}; a broken link?)"])
        continue
      if not stat.S_ISREG(mode):  # opening a FIFO would wait forever for a writer
        skipped.append([rel, "not a regular file (a FIFO, socket or device): not opened"])
        continue
      try:
        with open(path, "rb") as f:
          digest = hashlib.sha256(f.read()).hexdigest()
      except OSError as e:
        skipped.append([rel, f"cannot be read ({e.strerror})"])
        continue
      if digest in first_seen:
        o_ident, o_rel = first_seen[digest]
        if o_ident == ident:
          skipped.append([rel, f"duplicate of {o_rel}"])
        else:
          skipped.append([rel, f"identical to {o_rel} of identity {o_ident!r}: skipped in both"])
          cross_dupes.add(o_rel)
        continue
      try:
        _, notes = load_image(path, resolution, min_size)
      except ValueError as e:
        skipped.append([rel, str(e)])
        continue
      first_seen[digest] = (ident, rel)
      files[ident].append(rel)
      converted += [[rel, n] for n in notes]
  for ident in idents:
    for rel in [r for r in files[ident] if r in cross_dupes]:
      files[ident].remove(rel)
      skipped.append([rel, "identical to a file of another identity: skipped in both"])
  out = Scan(os.path.abspath(root), idents, files, skipped, converted, ignored)
  if cache:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = cache + ".tmp"
    with open(tmp, "w") as f:
      json.dump(out.to_json(), f)
    os.replace(tmp, cache)
  return out


def check_scan(s: Scan, need_per_identity: int) -> None:
  """ConfigError-style checks, before anything is built or compiled."""
  if len(s.identities) < 2:
    raise DataError(f"data.root={s.root!r} has {len(s.identities)} identity folder(s) "
                    f"{s.identities}; need at least 2 (one decoder each)")
  for ident in s.identities:
    n = len(s.files[ident])
    if n < need_per_identity:
      bad = [f"{r} ({why})" for r, why in s.skipped if r.startswith(ident + os.sep)][:5]
      raise DataError(
          f"identity folder {os.path.join(s.root, ident)!r} has {n} usable images; need at least "
          f"{need_per_identity} (data.test_per_identity held out + train.batch_size)"
          + (f"; skipped e.g.: {'; '.join(bad)}" if bad else ""))


def split_files(s: Scan, test_per_identity: int) -> dict[str, list[tuple[int, str]]]:
  """{'train': [(identity, rel)], 'test': [...]}: the test images of each identity are a fixed
  hash-chosen subset, so adding files rarely moves images between splits."""
  out = {"train": [], "test": []}
  for i, ident in enumerate(s.identities):
    ranked = sorted(s.files[ident], key=lambda r: hashlib.sha1(os.fsencode(r)).hexdigest())
    test = set(ranked[:test_per_identity])
    for rel in s.files[ident]:
      out["test" if rel in test else "train"].append((i, rel))
  return out


_BUILDER = None


def _builder_class():
  """The TFDS builder, defined once on first use (TFDS registers builder classes by name)."""
  global _BUILDER
  if _BUILDER is None:
    _BUILDER = _define_builder()
  return _BUILDER


def _define_builder():
  import tensorflow_datasets as tfds

  @dataclasses.dataclass
  class FaceFoldersConfig(tfds.core.BuilderConfig):
    root: str = ""
    resolution: int = 64
    min_size: int = 32
    test_per_identity: int = 8
    scan_json: str = ""        # the Scan (accepted files), as JSON
    face_type: str = "whole_face"  # the crops' framing (align.FACE_TYPES): the template's landmarks

  class FaceFolders(tfds.core.GeneratorBasedBuilder):
    """Aligned face crops from ROOT/<identity>/ folders, checked by scan()."""
    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [FaceFoldersConfig(name="default")]

    def _info(self):
      c = self.builder_config
      r = c.resolution
      n = max(2, len(json.loads(c.scan_json)["identities"])) if c.scan_json else 2
      return dataset_info(
          builder=self, description="User-supplied aligned face crops, one folder per identity.",
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(r, r, 3)),
              "identity": tfds.features.ClassLabel(num_classes=n),
              "index": np.int64,
              "path": tfds.features.Text(),
              # Eyes, nose, mouth centre (pixels at this resolution): from the crop's JSON
              # (experiments.extract), else the template's; `aligned_json` says which.
              "landmarks": tfds.features.Tensor(shape=(4, 2), dtype=np.float32),
              "aligned_json": np.bool_,
              "landmarks_from": tfds.features.Text(),  # "json", or why the template's are used
          }), supervised_keys=None)

    def _split_generators(self, dl_manager):
      del dl_manager
      c = self.builder_config
      parts = split_files(Scan(**json.loads(c.scan_json)), c.test_per_identity)
      return {k: self._generate_examples(v) for k, v in parts.items()}

    def _generate_examples(self, items):
      c = self.builder_config
      for k, (i, rel) in enumerate(items):
        img, notes = load_image(os.path.join(c.root, rel), c.resolution, c.min_size)
        square = not any(n.startswith("centre-cropped") for n in notes)
        lm, source = crop_landmarks(os.path.join(c.root, rel), c.resolution, square, c.face_type)
        # TFDS keys and text are UTF-8: a name that is not keeps its escapes there.
        yield printable(rel), {"image": img, "identity": i, "index": k, "path": printable(rel),
                               "landmarks": lm, "aligned_json": source == "json",
                               "landmarks_from": source}

  return FaceFolders, FaceFoldersConfig


def load(root: str, resolution: int, min_size: int, test_per_identity: int, batch_size: int,
         data_dir: str, report_path: str = "", face_type: str = "whole_face") -> tuple[dict, dict, Scan]:
  """Scans, checks, prepares (TFDS, cached per folder fingerprint) and reads both splits:
  (train arrays, test arrays, scan). Masks: face, eye and mouth regions placed from each crop's
  landmarks (data/regions.py)."""
  import tensorflow_datasets as tfds
  min_size = min_side(resolution, min_size)
  cache = os.path.join(data_dir, "face_folders")
  s = scan(root, resolution, min_size, cache)
  if report_path:
    tmp = report_path + ".tmp"
    with open(tmp, "w") as f:
      json.dump({"summary": s.summary(), **s.to_json()}, f, indent=1)
    os.replace(tmp, report_path)
  check_scan(s, test_per_identity + batch_size)
  check_face_types(root, s, face_type)
  cls, cfg_cls = _builder_class()
  fp, _ = fingerprint(root, resolution, min_size, face_type)
  cfg = cfg_cls(name=f"r{resolution}_h{test_per_identity}_{fp}", root=os.path.abspath(root),
                resolution=resolution, min_size=min_size, test_per_identity=test_per_identity,
                scan_json=json.dumps(s.to_json()), face_type=face_type)
  b = cls(config=cfg, data_dir=data_dir)
  from encdec_jax.cachelock import cache_lock
  with cache_lock(str(b.data_path), "the image-folder dataset"):  # concurrent runs prepare it once
    b.download_and_prepare()
  from encdec_jax.data.regions import masks_from_landmarks
  out = []
  for split in ("train", "test"):
    n = b.info.splits[split].num_examples
    arrays = next(iter(tfds.as_numpy(b.as_dataset(split=split, shuffle_files=False).batch(n))))
    order = np.lexsort((arrays["index"], arrays["identity"]))
    arrays = {k: v[order] for k, v in arrays.items()}
    # Real crops have no drawn masks: the face, eye and mouth regions placed from each crop's
    # landmarks (data/regions.py), which the mask-weighted loss, the convert and the judges use.
    arrays["mask"] = np.stack([np.round(masks_from_landmarks(lm, resolution, face_type) * 255).astype(np.uint8)
                               for lm in arrays["landmarks"]]) if n else np.zeros(
                                   arrays["image"].shape, np.uint8)
    out.append(arrays)
  if report_path:
    add_landmark_counts(report_path, out)
  return out[0], out[1], s


def landmark_counts(splits) -> dict:
  """{"from_json": crops whose landmarks came from extract's JSON, "template": {why: crops}}
  over the arrays of both splits."""
  sources = [x.decode() if isinstance(x, bytes) else str(x)
             for arrays in splits for x in arrays.get("landmarks_from", [])]
  fallback: dict[str, int] = {}
  for x in sources:
    if x != "json":
      fallback[x] = fallback.get(x, 0) + 1
  return {"from_json": sources.count("json"), "template": dict(sorted(fallback.items()))}


def add_landmark_counts(report_path: str, splits) -> None:
  """Adds where every crop's landmarks came from to data_report.json (atomic)."""
  with open(report_path) as f:
    report = {**json.load(f), "landmarks": landmark_counts(splits)}
  with open(report_path + ".tmp", "w") as f:
    json.dump(report, f, indent=1)
  os.replace(report_path + ".tmp", report_path)
