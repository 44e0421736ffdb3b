"""The configured dataset as in-memory arrays, its cache key, and its export to a plain array file
that a machine without TensorFlow trains from (data.name='arrays')."""
from __future__ import annotations

import functools
import json
import os

import numpy as np

from encdec_jax.config import ConfigError, ExperimentConfig

ARRAYS_FORMAT = "encdec_jax.arrays/1"
# config.data.name: built-in synthetic faces, the user's image folders, or an exported .npz.
DATASETS = ("synthetic_faces", "folders", "arrays")
DATA_REPORT = "data_report.json"  # in a run's workdir: every image file's outcome (image folders)


def _no_masks(data: str) -> str:
  return (f"this run needs face masks (config.mask.enabled, config.model.learn_mask or a swap loss "
          f"term in config.loss); {data} has none: add --config.mask.enabled=False, leave "
          "model.learn_mask off and drop the swap terms")


def check_data_config(cfg: ExperimentConfig) -> None:
  """The data fields a registry or another section constrains, without opening anything (files
  are checked by load_data, before anything is built or compiled)."""
  d = cfg.data
  if d.name not in DATASETS:
    raise ConfigError(f"config.data.name={d.name!r}; valid: {sorted(DATASETS)}")
  from encdec_jax.align import FACE_TYPES
  if d.face_type not in FACE_TYPES:
    raise ConfigError(f"config.data.face_type={d.face_type!r}; valid: {sorted(FACE_TYPES)}")
  if d.name == "folders":
    if not d.root:
      raise ConfigError("config.data.root is empty; data.name='folders' reads ROOT/<identity>/*.png|jpg")


def check_folders(cfg: ExperimentConfig) -> None:
  """data.root holds one folder per configured identity; ConfigError naming the root otherwise."""
  from encdec_jax.data.folders import DataError, identity_folders
  d = cfg.data
  try:
    found = identity_folders(d.root)
  except DataError as e:
    raise ConfigError(f"config.data.root: {e}") from None
  if len(found) != d.identities:
    raise ConfigError(f"config.data.root={d.root!r} has {len(found)} identity folders {found}; "
                      f"set config.data.identities={len(found)} (it is {d.identities})")


def load_data(cfg: ExperimentConfig, workdir: str | None = None, need_masks: bool = False):
  """(train arrays, test arrays) of the configured dataset. TFDS (and so TensorFlow) is imported
  only for synthetic_faces and folders; data.name='arrays' reads an exported .npz with numpy.
  For image folders, every file's outcome is written to WORKDIR/data_report.json first.
  `need_masks`: the run trains with face masks (losses.compose.needs_masks): data without them is
  refused."""
  d = cfg.data
  if d.name == "arrays":
    train, test, _ = read_arrays(cfg, need_masks=need_masks)
    return train, test
  from encdec_jax.data import synthetic
  if d.name == "folders":
    from encdec_jax.data import folders
    check_folders(cfg)
    report = os.path.join(workdir, DATA_REPORT) if workdir else ""
    try:
      train, test, scan = folders.load(d.root, d.resolution, d.min_size, d.test_per_identity,
                                       cfg.train.batch_size, d.dir or synthetic.default_data_dir(),
                                       report, d.face_type)
    except folders.DataError as e:
      raise ConfigError(str(e)) from None
    print(scan.summary() + (f" (details: {report})" if report else ""))
    return train, test
  from encdec_jax.data import synthetic_faces
  b = synthetic_faces.builder(d.resolution, d.identities, d.seed, d.train_per_identity,
                              d.test_per_identity, d.frame_side, d.face_type, d.dir)
  return synthetic_faces.load_split(b, "train"), synthetic_faces.load_split(b, "test")


def dataset_key(cfg: ExperimentConfig) -> str:
  """A name for the dataset's content, for caches such as the judges (an exported copy keeps the
  name of what it was exported from)."""
  d = cfg.data
  if d.name == "arrays":
    return read_arrays(cfg, meta_only=True)[2]["dataset_key"]
  if d.name == "folders":
    from encdec_jax.data import folders, image_files
    fp, _ = folders.fingerprint(d.root, d.resolution, image_files.min_side(d.resolution, d.min_size),
                                d.face_type)
    return f"folders_r{d.resolution}_h{d.test_per_identity}_{fp}"
  from encdec_jax.data import synthetic
  return f"synthetic_faces_{synthetic.VERSION}_" + synthetic.config_name(
      d.resolution, d.identities, d.seed, d.train_per_identity, d.test_per_identity, d.frame_side,
      d.face_type)


def synthetic_settings(cfg: ExperimentConfig) -> dict | None:
  """The synthetic_faces settings the data was made with (None for image folders)."""
  d = cfg.data
  if d.name == "arrays":
    return read_arrays(cfg, meta_only=True)[2].get("synthetic")
  if d.name == "synthetic_faces":
    return {"seed": d.seed, "identities": d.identities, "resolution": d.resolution,
            "train_per_identity": d.train_per_identity, "frame_resolution": d.frame_side,
            "face_type": d.face_type}
  return None


def own_crops_fn(cfg: ExperimentConfig):
  """Synthetic faces: (j, factors (B, F)) -> identity j's own aligned crops at those factors
  (synthetic.own_crops: what a perfect decoder j draws for sources with them), for the
  evaluation's `_ideal` reference; read-only, rendered once per process for the same faces (a
  sweep's runs are evaluated on one held-out split). None for other data (no renderer to ask)."""
  s = synthetic_settings(cfg)
  if s is None:
    return None
  settings = (s["seed"], s["resolution"], s["frame_resolution"], s["face_type"])

  def crops(j, factors):
    f = np.ascontiguousarray(factors, np.float32)
    return _own_crops(settings, int(j), f.tobytes(), f.shape)
  return crops


@functools.lru_cache(maxsize=8)
def _own_crops(settings: tuple, j: int, factors_bytes: bytes, shape: tuple) -> np.ndarray:
  from encdec_jax.data import synthetic
  seed, resolution, frame_resolution, face_type = settings
  out = synthetic.own_crops(seed, j, np.frombuffer(factors_bytes, np.float32).reshape(shape),
                            resolution, frame_resolution, face_type)
  out.flags.writeable = False
  return out


def export_arrays(cfg: ExperimentConfig, path: str) -> dict:
  """Writes the configured dataset's train and test splits to one .npz (no pickle): what
  data.name='arrays' reads. Returns its meta."""
  train, test = load_data(cfg)
  meta = {"format": ARRAYS_FORMAT, "dataset_key": dataset_key(cfg), "name": cfg.data.name,
          "resolution": cfg.data.resolution, "identities": cfg.data.identities,
          "synthetic": synthetic_settings(cfg)}
  if cfg.data.name == "synthetic_faces":
    from encdec_jax.data import synthetic
    meta["synthetic_version"] = synthetic.VERSION
  arrays = {f"{split}/{k}": v for split, d in (("train", train), ("test", test)) for k, v in d.items()}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
  os.replace(tmp, path)
  return meta


def read_arrays(cfg: ExperimentConfig, meta_only: bool = False, need_masks: bool = False):
  """(train, test, meta) from the .npz at data.root, checked against the config; ConfigError
  naming the file and the field otherwise."""
  d = cfg.data
  path = d.root
  if not path or not os.path.isfile(path):
    raise ConfigError(f"config.data.root={path!r} is not a file; data.name='arrays' reads a .npz "
                      "written by `python -m experiments.export_data`")
  try:
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(str(z["meta"]))
      if meta.get("format") != ARRAYS_FORMAT:
        raise ConfigError(f"{path}: format {meta.get('format')!r}, expected {ARRAYS_FORMAT!r}")
      arrays = {} if meta_only else {k: z[k] for k in z.files if k != "meta"}
  except (OSError, ValueError, KeyError) as e:
    if isinstance(e, ConfigError):
      raise
    raise ConfigError(f"config.data.root={path!r} is not an array file written by "
                      f"experiments.export_data ({e})") from None
  for field, want in (("resolution", d.resolution), ("identities", d.identities)):
    if meta[field] != want:
      raise ConfigError(f"config.data.{field}={want} but {path} holds data with {field}={meta[field]}")
  if meta.get("synthetic_version"):
    from encdec_jax.data import synthetic
    if meta["synthetic_version"] != synthetic.VERSION:
      raise ConfigError(f"{path} was exported from synthetic_faces {meta['synthetic_version']}; this "
                        f"code makes {synthetic.VERSION}: export it again")
  if need_masks and not meta_only and "train/mask" not in arrays:
    raise ConfigError(_no_masks(path))
  split = lambda s: {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(s + "/")}
  return split("train"), split("test"), meta
