"""The bootstrap standard error of a metric's mean over held-out images (encdec_jax/bootstrap.py)."""
import numpy as np
import pytest

from encdec_jax import bootstrap


def test_standard_error_of_a_mean_is_sd_over_root_n():
  """One part: the plug-in standard error of a mean, sd / sqrt(n), within the bootstrap's noise."""
  v = np.random.default_rng(1).normal(size=400)
  se = bootstrap.standard_error([v], resamples=4000)
  assert se == pytest.approx(v.std() / np.sqrt(v.size), rel=0.05)


def test_parts_are_resampled_apart_and_averaged():
  """The mean over P equal parts: each part's error / sqrt(P); a constant part adds none; shares
  of 0/1 give sqrt(p(1-p)/n); the same call gives the same number."""
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=300), rng.normal(size=300)
  one = bootstrap.standard_error([a], resamples=4000)
  two = bootstrap.standard_error([a, b], resamples=4000)
  assert two == pytest.approx(one / np.sqrt(2), rel=0.08)
  assert bootstrap.standard_error([a, np.full(300, 5.0)], resamples=4000) == pytest.approx(one / 2, rel=0.05)
  hits = np.r_[np.ones(24), np.zeros(8)]  # id_transfer 0.75 on 32 faces
  assert bootstrap.standard_error([hits], resamples=4000) == pytest.approx(np.sqrt(0.75 * 0.25 / 32), rel=0.08)
  assert bootstrap.standard_error([a, b]) == bootstrap.standard_error([a, b])
  assert bootstrap.standard_error([np.zeros(5)]) == 0.0
  with pytest.raises(ValueError, match="no values"):
    bootstrap.standard_error([a, []])
