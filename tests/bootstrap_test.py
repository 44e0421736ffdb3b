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


def test_correlation_follows_ignores_and_inverts_over_the_images_axis():
  """bootstrap.correlation: 1 for rows that follow, -1 for rows that move the other way, 0 where
  either column is constant; one value per leading index, each as if taken alone."""
  x = np.random.default_rng(3).normal(size=(4, 50))
  stacked = np.stack([np.stack([x, 2 * x + 1], -1), np.stack([x, -x], -1),
                      np.stack([x, np.full_like(x, 0.3)], -1), np.stack([np.zeros_like(x), x], -1)])
  got = bootstrap.correlation(stacked)  # (4 kinds, 4 rows)
  np.testing.assert_allclose(got[0], 1.0, atol=1e-12)
  np.testing.assert_allclose(got[1], -1.0, atol=1e-12)
  assert (got[2] == 0).all() and (got[3] == 0).all()
  noisy = np.stack([x, x + np.random.default_rng(4).normal(size=x.shape)], -1)
  np.testing.assert_allclose(bootstrap.correlation(noisy), [np.corrcoef(r[:, 0], r[:, 1])[0, 1] for r in noisy])


def test_standard_error_of_a_set_statistic_resamples_its_rows_together():
  """A correlation over n images (rows resampled together, not each column apart): its standard
  error is about (1 - r^2) / sqrt(n) for normal data; two equal parts averaged give 1 / sqrt(2)
  of it; SetStatistic's value is the statistic on its rows."""
  rng = np.random.default_rng(5)
  n, r = 400, 0.6
  x = rng.normal(size=(2, n))
  y = r * x + np.sqrt(1 - r * r) * rng.normal(size=(2, n))
  a, b = np.stack([x[0], y[0]], -1), np.stack([x[1], y[1]], -1)
  one = bootstrap.standard_error([a], resamples=4000, statistic=bootstrap.correlation)
  assert one == pytest.approx((1 - r * r) / np.sqrt(n), rel=0.15)
  two = bootstrap.standard_error([a, b], resamples=4000, statistic=bootstrap.correlation)
  assert two == pytest.approx(one / np.sqrt(2), rel=0.15)
  # Resampling the columns apart would break the pairing: the error of a correlation near 0.
  apart = bootstrap.standard_error([np.stack([x[0], rng.permutation(y[0])], -1)], resamples=4000,
                                   statistic=bootstrap.correlation)
  assert apart == pytest.approx(1 / np.sqrt(n), rel=0.15) and apart > 1.3 * one
  assert bootstrap.SetStatistic(a).value() == pytest.approx(np.corrcoef(x[0], y[0])[0, 1])
  assert bootstrap.standard_error([np.stack([x[0], 2 * x[0]], -1)], statistic=bootstrap.correlation) < 1e-12
