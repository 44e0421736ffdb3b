"""The TFDS DatasetInfo of the datasets made on this machine (synthetic_faces, the image folders).

TFDS's own, whenever a builder is made before its data is prepared, first makes a temporary
folder to copy a precomputed info from TFDS's GCS bucket into, and then, finding none (or GCS
disabled), returns and leaves the folder: one empty /tmp/tmp*tfds per new dataset, never
removed. These datasets are never on that bucket: their info does not look there.
"""
from __future__ import annotations

import functools


@functools.cache
def _local_info():
  import tensorflow_datasets as tfds

  class LocalDatasetInfo(tfds.core.DatasetInfo):
    def initialize_from_bucket(self) -> None:
      """Nothing: a dataset made here is not on TFDS's bucket."""

  return LocalDatasetInfo


def dataset_info(**kwargs):
  """tfds.core.DatasetInfo(**kwargs) that never looks for the dataset on TFDS's bucket."""
  return _local_info()(**kwargs)
