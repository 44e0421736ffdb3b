"""The sampling error of an evaluation metric: a bootstrap over held-out images.

A metric reported as the mean over identities (or ordered pairs) of a per-image score is
resampled within each part (the images of one identity or pair, with replacement), so the error
is that of the held-out set's size, not of the model: a run evaluated on other faces of the same
identities would move by about this much. Compare it with the spread over seeds.

A metric that is a statistic of a part's images taken together (a correlation over them) is
given as a `SetStatistic`: its rows (one per image) are resampled, and the statistic taken on
each resample.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

RESAMPLES = 1000


def correlation(rows) -> np.ndarray:
  """The correlation of rows[..., 0] with rows[..., 1] over the images (the second-last axis), one
  per leading index: 1 where the second follows the first, 0 where either is constant."""
  rows = np.asarray(rows, np.float64)
  x = rows[..., 0] - rows[..., 0].mean(-1, keepdims=True)
  y = rows[..., 1] - rows[..., 1].mean(-1, keepdims=True)
  xx, yy, xy = (x * x).sum(-1), (y * y).sum(-1), (x * y).sum(-1)
  ok = (yy > 1e-12 * xx) & (xx > 0)
  return np.where(ok, xy / np.sqrt(np.where(ok, xx * yy, 1.0)), 0.0)


@dataclasses.dataclass(frozen=True)
class SetStatistic:
  """A part's score that is a statistic of its images taken together, not a mean of per-image
  scores: `rows` (n images, k), `statistic` (..., n, k) -> (...), e.g. `correlation`."""
  rows: np.ndarray
  statistic: Callable[[np.ndarray], np.ndarray] = correlation

  def value(self) -> float:
    return float(self.statistic(self.rows))


def standard_error(parts: list, resamples: int = RESAMPLES, seed: int = 0,
                   statistic: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
  """The bootstrap standard error of mean_p(score(parts[p])): each part resampled with
  replacement, `resamples` times, with a fixed seed (the same numbers on every call). Without
  `statistic` a part is a 1-D array of per-image scores and its score their mean; with it a part
  is its images' rows (n, k) and its score statistic(rows) (SetStatistic)."""
  rng = np.random.default_rng(seed)
  means = np.zeros(resamples)
  for values in parts:
    v = np.asarray(values, np.float64)
    v = v.reshape(-1) if statistic is None else v
    if v.size == 0:
      raise ValueError("standard_error: a part has no values")
    drawn = v[rng.integers(0, len(v), (resamples, len(v)))]
    means += drawn.mean(1) if statistic is None else statistic(drawn)
  return float((means / len(parts)).std(ddof=1))
