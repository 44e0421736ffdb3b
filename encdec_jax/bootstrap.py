"""The sampling error of an evaluation metric: a bootstrap over held-out images.

A metric reported as the mean over identities (or ordered pairs) of a per-image score is
resampled within each part (the images of one identity or pair, with replacement), so the error
is that of the held-out set's size, not of the model: a run evaluated on other faces of the same
identities would move by about this much. Compare it with the spread over seeds.
"""
from __future__ import annotations

import numpy as np

RESAMPLES = 1000


def standard_error(parts: list, resamples: int = RESAMPLES, seed: int = 0) -> float:
  """The bootstrap standard error of mean_p(mean(parts[p])): each part (a 1-D array of per-image
  scores) resampled with replacement, `resamples` times, with a fixed seed (the same numbers on
  every call)."""
  rng = np.random.default_rng(seed)
  means = np.zeros(resamples)
  for values in parts:
    v = np.asarray(values, np.float64).reshape(-1)
    if v.size == 0:
      raise ValueError("standard_error: a part has no values")
    means += v[rng.integers(0, v.size, (resamples, v.size))].mean(1)
  return float((means / len(parts)).std(ddof=1))
