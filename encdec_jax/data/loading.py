"""The configured dataset as in-memory arrays, its cache key, and its swap judges."""
from __future__ import annotations

import os

from encdec_jax.config import ConfigError, ExperimentConfig


def load_data(cfg: ExperimentConfig, workdir: str | None = None):
  """(train arrays, test arrays) of the configured dataset; TFDS imported only here. For image
  folders, every file's outcome is written to WORKDIR/data_report.json first."""
  d = cfg.data
  if d.name == "folders":
    from encdec_jax.data import folders, synthetic_faces
    report = os.path.join(workdir, "data_report.json") if workdir else ""
    try:
      train, test, scan = folders.load(d.root, d.resolution, d.min_size, d.test_per_identity,
                                       cfg.train.batch_size, d.dir or synthetic_faces.default_data_dir(),
                                       report)
    except folders.DataError as e:
      raise ConfigError(str(e)) from None
    print(scan.summary() + (f" (details: {report})" if report else ""))
    return train, test
  from encdec_jax.data import synthetic_faces
  b = synthetic_faces.builder(d.resolution, d.identities, d.seed, d.train_per_identity,
                              d.test_per_identity, d.dir)
  return synthetic_faces.load_split(b, "train"), synthetic_faces.load_split(b, "test")


def dataset_key(cfg: ExperimentConfig) -> str:
  """A name for the dataset's content, for caches such as the judges."""
  d = cfg.data
  if d.name == "folders":
    from encdec_jax.data import folders
    fp, _ = folders._fingerprint(d.root, d.resolution, d.min_size or max(8, d.resolution // 2))
    return f"folders_r{d.resolution}_h{d.test_per_identity}_{fp}"
  from encdec_jax.data import synthetic_faces
  return "synthetic_faces_" + synthetic_faces.config_name(d.resolution, d.identities, d.seed,
                                                          d.train_per_identity, d.test_per_identity)


def get_judges(cfg: ExperimentConfig, train: dict, test: dict):
  """The dataset's judges (trained once, cached next to the TFDS data), or None if disabled."""
  if not cfg.eval.judges:
    return None
  from encdec_jax import judges as judges_lib
  from encdec_jax.data import synthetic_faces
  return judges_lib.get(train, test, cfg.data.identities, cfg.data.dir or synthetic_faces.default_data_dir(),
                        dataset_key(cfg), cfg.eval.judge_steps)
