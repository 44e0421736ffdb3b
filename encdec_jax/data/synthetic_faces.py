"""The `synthetic_faces` TFDS dataset: procedural faces, no download.

Splits: `train` (train_per_identity images per identity) and `test` (held out). Every example
is a frame and its aligned crop (encdec_jax/data/synthetic.py): `image`, `mask` (visible face,
eye region, mouth region) and `landmarks` are the crop's, what the model trains on; `frame`,
`frame_mask`, `frame_landmarks` the frame's; `transform` (2, 3) takes frame pixels to crop pixels.
Every held-out example also stores, for every identity j (index j):
  `swaps`: the same factors rendered as identity j, hair included (the full-head rendering), in
      this example's crop;
  `face_swaps`: the true face swap, in the frame: this example's frame (head size, hair, neck
      and ears, background, pose, expression, lighting) with j's face (render.FACE_TRAITS), what
      a perfect convert (decoded face pasted back into the frame inside a face mask) would produce;
  `face_swap_masks`: that face swap's masks, in the frame; `face_swap_landmarks`: its landmarks,
      in this example's crop (where the judges look for j's eyes, nose and mouth).
Index j == the example's own identity is the example itself. A config is named by its settings,
e.g. "r32_n2_s0_t600_h32_f64_whole_face", so each set of settings is prepared once per data_dir.
Preparing and reading it imports no TensorFlow: the rendering processes hand TFDS each image
as PNG bytes (synthetic.encoded), which it stores as they are, and it reads them back with numpy
and PIL. The model and the train step never import TFDS.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from encdec_jax.align import LANDMARK_NAMES
from encdec_jax.config import DataConfig
from encdec_jax.data import render as R
# The dataset's pure-numpy half (version, config names, factors) lives in synthetic.py.
from encdec_jax.data import synthetic
from encdec_jax.data.tfds_info import dataset_info
from encdec_jax.data.synthetic import VERSION, config_name, default_data_dir, example_factors  # noqa: F401


_D = DataConfig()  # the defaults are config.data's
FILE_FORMAT = "array_record"  # read back without TensorFlow (load_split)


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  resolution: int = _D.resolution
  identities: int = _D.identities
  train_per_identity: int = _D.train_per_identity
  test_per_identity: int = _D.test_per_identity
  seed: int = _D.seed
  frame_resolution: int = _D.frame_side
  face_type: str = _D.face_type


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Procedurally rendered faces with identity traits, pose/expression factors and true swaps."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {"3.0.0": "frames and aligned crops (face types); true face swaps in the frame",
                   "2.1.0": "array_record files, read without TensorFlow",
                   "2.0.0": "true face swaps, visible-face masks", "1.0.0": "first release"}
  BUILDER_CONFIGS = [SyntheticFacesConfig(name=config_name(_D.resolution, _D.identities, _D.seed,
                                                           _D.train_per_identity, _D.test_per_identity,
                                                           _D.frame_side, _D.face_type))]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    r, fr = c.resolution, c.frame_resolution
    lm = tfds.features.Tensor(shape=(len(LANDMARK_NAMES), 2), dtype=np.float32)
    return dataset_info(
        builder=self,
        description="Procedural cartoon faces; held-out examples carry ground-truth swaps.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(r, r, 3)),
            # Channels: face, eye region, mouth region (0..255 coverage).
            "mask": tfds.features.Image(shape=(r, r, 3)),
            "identity": tfds.features.ClassLabel(num_classes=c.identities),
            "index": np.int64,  # position within the identity: (identity, index) is the key
            "factors": tfds.features.Tensor(shape=(len(R.FACTOR_NAMES),), dtype=np.float32),
            "landmarks": lm,
            # The frame the crop was cut from, and the cut: frame pixels -> crop pixels.
            "frame": tfds.features.Image(shape=(fr, fr, 3)),
            "frame_mask": tfds.features.Image(shape=(fr, fr, 3)),
            "frame_landmarks": lm,
            "transform": tfds.features.Tensor(shape=(2, 3), dtype=np.float32),
            # Ground-truth swaps: the same factors as identity j, in this crop (empty in `train`).
            "swaps": tfds.features.Sequence(tfds.features.Image(shape=(r, r, 3))),
            # True face swaps: this frame with identity j's face, its masks (in the frame) and
            # landmarks (in this crop).
            "face_swaps": tfds.features.Sequence(tfds.features.Image(shape=(fr, fr, 3))),
            "face_swap_masks": tfds.features.Sequence(tfds.features.Image(shape=(fr, fr, 3))),
            "face_swap_landmarks": tfds.features.Sequence(lm),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.train_per_identity),
            "test": self._generate_examples("test", c.test_per_identity)}

  def _generate_examples(self, split, per_identity):
    c = self.builder_config
    settings = (c.seed, c.identities, c.resolution, c.frame_resolution, c.face_type)
    yield from synthetic.examples(settings, split, per_identity, encode=True)


def builder(resolution: int, identities: int, seed: int, train_per_identity: int,
            test_per_identity: int, frame_resolution: int, face_type: str,
            data_dir: str = "") -> SyntheticFaces:
  cfg = SyntheticFacesConfig(
      name=config_name(resolution, identities, seed, train_per_identity, test_per_identity,
                       frame_resolution, face_type),
      resolution=resolution, identities=identities, train_per_identity=train_per_identity,
      test_per_identity=test_per_identity, seed=seed, frame_resolution=frame_resolution,
      face_type=face_type)
  # TFDS refuses a custom config named like a declared one: pass the declared one by name.
  declared = {c.name: c for c in SyntheticFaces.BUILDER_CONFIGS}
  config = cfg.name if declared.get(cfg.name) == cfg else cfg
  return SyntheticFaces(config=config, data_dir=data_dir or default_data_dir(), file_format=FILE_FORMAT)


def load_split(b: SyntheticFaces, split: str) -> dict[str, np.ndarray]:
  """Prepares the dataset if needed and reads a whole split into memory, in (identity, index)
  order (TFDS shuffles records by key hash when writing). Read through TFDS's array_record data
  source: numpy and PIL decode it, so reading imports no TensorFlow."""
  from encdec_jax.cachelock import cache_lock
  with cache_lock(str(b.data_path), "the synthetic_faces dataset"):  # concurrent runs prepare it once
    b.download_and_prepare()
  if split not in b.info.splits:  # another process prepared it after this builder read its info
    b = SyntheticFaces(config=b.builder_config, data_dir=b._data_dir_root, file_format=FILE_FORMAT)
  source = b.as_data_source(split=split)
  rows = [source[k] for k in range(len(source))]
  arrays = {key: _stack(f, [r[key] for r in rows]) for key, f in b.info.features.items()}
  order = np.lexsort((arrays["index"], arrays["identity"]))
  return {k: v[order] for k, v in arrays.items()}


def _stack(feature, values) -> np.ndarray:
  """One feature's values of every example as one array of the feature's dtype; an empty
  sequence (the training split's swaps) keeps its inner shape, (0, H, W, C)."""
  empty = tuple(0 if d is None else d for d in feature.shape)
  return np.stack([np.asarray(v).reshape(empty) if np.size(v) == 0 else np.asarray(v)
                   for v in values]).astype(feature.np_dtype, copy=False)
