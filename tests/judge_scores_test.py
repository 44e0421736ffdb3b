"""The judges' scores and the statistics beside them, by hand: fixed judge outputs, tiny arrays and a
saved-and-loaded cache, no fitted judges (tests/judges_test.py fits them on renderings)."""
import os

import jax
import numpy as np
import pytest

from encdec_jax import image_stats, judge_cache, judges as judges_lib, ridge
from encdec_jax.data import render as R


def test_variation_is_one_for_the_truth_and_zero_for_one_face():
  rng = np.random.default_rng(0)
  truth = rng.random((6, 8, 8, 3)).astype(np.float32)
  region = np.zeros((8, 8, 1), np.float32)
  region[2:6, 2:6] = 1
  assert image_stats.variation(truth, truth, region) == pytest.approx(1.0)
  assert image_stats.variation(np.broadcast_to(truth.mean(0), truth.shape), truth, region) == pytest.approx(0.0, abs=1e-6)
  outside = truth.copy()
  outside[:, 2:6, 2:6] = truth[0, 2:6, 2:6]  # varies only where the region is not
  assert image_stats.variation(outside, truth, region) == pytest.approx(0.0, abs=1e-6)
  assert image_stats.variation(0.5 * truth, truth, region) == pytest.approx(0.5, rel=1e-5)


def test_scores_equal_hand_computed_values(monkeypatch):
  """Fixed judge outputs -> shares and errors by hand, per image and as means; attr_mae averages
  the readable factors, expr_mae the readable expression ones, pose_mae the pose ones."""
  ids = np.array([1, 0, 1, 1])
  est = np.array([[1.0] * 7, [0.0] * 7, [0.5] * 7, [-1.0] * 7], np.float32)  # pose errors 0, 1, .5, 2
  est[:, 3:6] = 1.5  # smile, mouth_open, blink: off by 0.5 on every image
  est[:, 6] = 10.0  # an unreadable factor's estimate must not count
  monkeypatch.setattr(judges_lib.Judges, "identify", lambda self, x, m: ids[: len(x)])
  monkeypatch.setattr(judges_lib.Judges, "attributes", lambda self, x, m, lm: est[: len(x)])
  floors = np.array([0.1] * 6 + [0.9], np.float32)
  j = judges_lib.Judges({}, np.zeros(1), np.zeros(1), 2, np.zeros(7, np.float32),
                        np.full(7, 2.0, np.float32), 1.0, floors, np.ones(7, np.float32))
  assert list(j.readable) == [True] * 6 + [False] and j.attr_floor == pytest.approx(0.1)
  factors = np.zeros((4, 16), np.float32)
  factors[:, :7] = 2.0  # standardised: (2 - 0) / 2 = 1
  s = judges_lib.swap_scores(j, np.zeros((4, 8, 8, 3), np.float32), np.ones((4, 8, 8, 1)),
                             np.zeros((4, 4, 2)), 0, 1, factors)
  assert s["id_transfer"] == 0.75 and s["id_leak"] == 0.25
  assert s["pose_mae"] == pytest.approx(np.mean([0.0, 1.0, 0.5, 2.0]))
  assert s["expr_mae"] == pytest.approx(0.5)  # brow_raise's 9 left out
  assert s["attr_mae"] == pytest.approx((0.875 + 0.5) / 2)
  assert s["attr_err/brow_raise"] == pytest.approx(9.0) and s["attr_err/smile"] == pytest.approx(0.5)
  per = judges_lib.swap_samples(j, np.zeros((4, 8, 8, 3), np.float32), np.ones((4, 8, 8, 1)),
                                np.zeros((4, 4, 2)), 0, 1, factors)
  np.testing.assert_allclose(per["attr_mae"], [0.25, 0.75, 0.5, 1.25], rtol=1e-6)
  np.testing.assert_array_equal(per["id_transfer"], [1, 0, 1, 1])
  # With no readable expression factor there is no expr_mae (not a mean of nothing).
  j.attr_floors[3:6] = 0.9
  assert "expr_mae" not in judges_lib.swap_scores(j, np.zeros((4, 8, 8, 3), np.float32), np.ones((4, 8, 8, 1)),
                                                  np.zeros((4, 4, 2)), 0, 1, factors)


def test_pair_metrics_by_hand():
  a = np.zeros((1, 4, 4, 3), np.float32)
  b = np.full((1, 4, 4, 3), 0.5, np.float32)
  b[0, :2] = 0.0  # the top half right, the bottom half off by 0.5
  m = image_stats.pair_metrics(a, b)
  assert float(m["mae"][0]) == pytest.approx(0.25)
  region = np.zeros((1, 4, 4, 1), np.float32)
  region[0, 2:] = 1.0
  m = image_stats.pair_metrics(a, b, region)
  assert float(m["mae"][0]) == pytest.approx(0.5)
  assert float(m["psnr"][0]) == pytest.approx(-10 * np.log10(0.25), rel=1e-5)


def test_judges_saved_and_loaded_at_a_relative_path(tmp_path, monkeypatch):
  """A relative config.data.dir puts the judges' cache at a relative path: a panel saved and read
  back the same, each member's arrays and scores and the panel's own (Orbax refuses relative
  paths; a run failed there after its training)."""
  rng = np.random.default_rng(0)
  arr = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
  judge = lambda: judges_lib.Judges(  # noqa: E731
      {"filters": arr(3, 3, 3, 4), "mu": arr(4), "sd": arr(4)}, arr(4, 2), arr(5, 7), 2, arr(7), arr(7),
      0.97, arr(7), arr(7), {"mu": arr(5), "sd": arr(5)}, arr(2, 7), 1.9)
  panel = judges_lib.Panel((judge(), judge()), 0.96, arr(7), arr(7), 0.2)
  monkeypatch.chdir(tmp_path)
  path = judge_cache.cache_dir("tfds", "some_dataset")
  assert not os.path.isabs(path)
  judge_cache.save(panel, path)
  back = judge_cache.load(path)
  assert back is not None and back.accuracy == panel.accuracy and back.locate_px == panel.locate_px
  np.testing.assert_array_equal(back.attr_floors, panel.attr_floors)
  assert len(back.members) == 2
  for j, b in zip(panel.members, back.members):
    assert b.accuracy == j.accuracy and b.patch_scale == j.patch_scale
    for x, y in zip(jax.tree.leaves((j.feats, j.classifier, j.regressor, j.patch_stats)),
                    jax.tree.leaves((b.feats, b.classifier, b.regressor, b.patch_stats))):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(b.attr_floors, j.attr_floors)


def test_signed_bias_keeps_the_direction_the_error_drops():
  """attr_bias/<factor> is the judge's reading minus the truth, per image: a judge that reads
  every face with +0.5 std of smile and -0.25 of yaw gives exactly that, where attr_err gives
  only sizes (and a mix of over- and under-readings averages to 0 bias, not to 0 error)."""
  n_attr = len(R.POSE_EXPRESSION)
  mean, std = np.linspace(0.1, 0.7, n_attr).astype(np.float32), np.full(n_attr, 2.0, np.float32)
  factors = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
  truth = (factors[:, :n_attr] - mean) / std
  shift = np.zeros(n_attr, np.float32)
  shift[R.POSE_EXPRESSION.index("smile")], shift[R.POSE_EXPRESSION.index("yaw")] = 0.5, -0.25
  wobble = np.where(np.arange(6)[:, None] % 2 == 0, 0.3, -0.3) * (np.arange(n_attr) == R.POSE_EXPRESSION.index("blink"))

  class Judge:  # reads the truth, shifted
    attr_mean, attr_std, regressor, readable = mean, std, np.zeros(1), np.ones(n_attr, bool)

    def identify(self, x, masks):
      return np.zeros(len(x), int)

    def attributes(self, x, masks, landmarks):
      return truth + shift + wobble

  out = judges_lib.swap_samples(Judge(), np.zeros((6, 4, 4, 3)), np.ones((6, 4, 4, 1)), np.zeros((6, 4, 2)),
                                0, 1, factors)
  for k, n in enumerate(R.POSE_EXPRESSION):
    np.testing.assert_allclose(out[f"attr_bias/{n}"], shift[k] + wobble[:, k], atol=1e-6)
    np.testing.assert_allclose(out[f"attr_err/{n}"], np.abs(shift[k] + wobble[:, k]), atol=1e-6)
  assert abs(out["attr_bias/blink"].mean()) < 1e-6 and out["attr_err/blink"].mean() > 0.29


def test_ridge_cv_equals_each_strength_solved_from_its_own_rows():
  """The cross-validated ridge (its Gram matrices formed once and summed for the refit) equals the
  textbook computation: per strength, a fit on the training rows scored on the held-out ones;
  per column, the best strength refitted on all rows."""
  rng = np.random.default_rng(0)
  copies, lams = 2, (0.01, 1.0, 100.0)
  f = rng.normal(size=(200, 12))
  y = f[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(200, 3)) * np.array([0.1, 3.0, 30.0])

  def solve(rows, lam):
    a = f[rows].T @ f[rows] + lam * rows.sum() / 100.0 * np.eye(12)
    return np.linalg.solve(a, f[rows].T @ y[rows])

  val = np.tile(np.arange(100) % 5 == 0, copies)
  errs = np.stack([np.abs(f[val] @ solve(~val, lam) - y[val]).mean(0) for lam in lams])
  best = errs.argmin(0)
  every = np.ones(len(f), bool)
  want = np.stack([solve(every, lams[b])[:, c] for c, b in enumerate(best)], 1)
  got = ridge.ridge_cv(f, y, copies, lams)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert len(set(best.tolist())) > 1  # the columns chose different strengths: each refit checked
