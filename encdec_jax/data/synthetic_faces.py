"""The `synthetic_faces` TFDS dataset: procedural faces, no download.

Splits: `train` (train_per_identity images per identity) and `test` (held out, each example with
`swaps`: the same factors rendered as every identity, index j = identity j). A config is named by
its settings, e.g. "r64_n2_s0_t1000_h32", so each set of settings is prepared once per data_dir.
TensorFlow is imported here only, never by the model or the train step.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from encdec_jax.data import render as R

VERSION = "1.0.0"
_SPLIT_IDS = {"train": 0, "test": 1}


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  resolution: int = 64
  identities: int = 2
  train_per_identity: int = 1000
  test_per_identity: int = 32
  seed: int = 0


def config_name(resolution, identities, seed, train_per_identity, test_per_identity) -> str:
  return f"r{resolution}_n{identities}_s{seed}_t{train_per_identity}_h{test_per_identity}"


def example_factors(seed: int, split: str, identity: int, index: int) -> np.ndarray:
  """Factors of one example: a pure function of (seed, split, identity, index)."""
  return R.sample_factors(np.random.default_rng([seed, 104729, _SPLIT_IDS[split], identity, index]))


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Procedurally rendered faces with identity traits, pose/expression factors and true swaps."""

  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = [SyntheticFacesConfig(name=config_name(64, 2, 0, 1000, 32))]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    r = c.resolution
    return tfds.core.DatasetInfo(
        builder=self,
        description="Procedural cartoon faces; held-out examples carry ground-truth swaps.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(r, r, 3)),
            # Channels: face, eye region, mouth region (0..255 coverage).
            "mask": tfds.features.Image(shape=(r, r, 3)),
            "identity": tfds.features.ClassLabel(num_classes=c.identities),
            "index": np.int64,  # position within the identity: (identity, index) is the key
            "factors": tfds.features.Tensor(shape=(len(R.FACTOR_NAMES),), dtype=np.float32),
            "landmarks": tfds.features.Tensor(shape=(len(R.LANDMARK_NAMES), 2), dtype=np.float32),
            # Ground-truth swaps: the same factors as identity j (empty in `train`).
            "swaps": tfds.features.Sequence(tfds.features.Image(shape=(r, r, 3))),
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
    traits = [R.identity_traits(c.seed, i) for i in range(c.identities)]
    for i in range(c.identities):
      for k in range(per_identity):
        f = example_factors(c.seed, split, i, k)
        out = R.render(traits[i], f, c.resolution)
        swaps = []
        if split == "test":
          swaps = [R.to_uint8(R.render(traits[j], f, c.resolution).image) if j != i
                   else R.to_uint8(out.image) for j in range(c.identities)]
        yield f"{i}_{k}", {
            "image": R.to_uint8(out.image), "mask": R.to_uint8(out.mask), "identity": i, "index": k,
            "factors": f.astype(np.float32), "landmarks": out.landmarks, "swaps": swaps,
        }


def default_data_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "encdec_jax", "tfds")


def builder(resolution: int, identities: int, seed: int, train_per_identity: int,
            test_per_identity: int, data_dir: str = "") -> SyntheticFaces:
  cfg = SyntheticFacesConfig(
      name=config_name(resolution, identities, seed, train_per_identity, test_per_identity),
      resolution=resolution, identities=identities, train_per_identity=train_per_identity,
      test_per_identity=test_per_identity, seed=seed)
  # TFDS refuses a custom config named like a declared one: pass the declared one by name.
  declared = {c.name: c for c in SyntheticFaces.BUILDER_CONFIGS}
  config = cfg.name if declared.get(cfg.name) == cfg else cfg
  return SyntheticFaces(config=config, data_dir=data_dir or default_data_dir())


def load_split(b: SyntheticFaces, split: str) -> dict[str, np.ndarray]:
  """Prepares the dataset if needed and reads a whole split into memory, in (identity, index)
  order (TFDS shuffles records by key hash when writing)."""
  b.download_and_prepare()
  n = b.info.splits[split].num_examples
  ds = b.as_dataset(split=split, shuffle_files=False)
  arrays = next(iter(tfds.as_numpy(ds.batch(n))))
  order = np.lexsort((arrays["index"], arrays["identity"]))
  return {k: v[order] for k, v in arrays.items()}
