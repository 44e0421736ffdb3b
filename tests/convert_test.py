"""The convert: a decoded face blended into its frame inside a (feathered) face mask."""
import numpy as np
import pytest

from encdec_jax import convert
from encdec_jax.data import render


def test_convert_blends_inside_the_feathered_mask():
  """Inside the mask the decoded face, far outside the frame, a ramp at the edge."""
  frame = np.zeros((1, 32, 32, 3), np.float32)
  face = np.ones((1, 32, 32, 3), np.float32)
  mask = np.zeros((1, 32, 32, 1), np.float32)
  mask[0, 8:24, 8:24] = 1.0
  out = convert.convert(frame, face, mask, sigma=1 / 32)
  assert out[0, 16, 16, 0] == pytest.approx(1.0, abs=1e-3) and out[0, 2, 2, 0] == pytest.approx(0.0, abs=1e-6)
  edge = out[0, 16, 6:11, 0]
  assert np.all(np.diff(edge) > 0) and 0.3 < out[0, 16, 8, 0] < 0.7  # smooth, centred on the edge
  np.testing.assert_array_equal(convert.convert(frame, face, mask, sigma=0.0)[..., :1], mask)


def test_convert_prefers_the_learned_mask():
  learned = np.full((2, 8, 8, 1), 0.25, np.float32)
  data = np.full((2, 8, 8, 3), 255, np.uint8)
  np.testing.assert_array_equal(convert.choose_mask(learned, data), learned)
  np.testing.assert_array_equal(convert.choose_mask(None, data), np.ones((2, 8, 8, 1), np.float32))
  np.testing.assert_array_equal(convert.choose_mask(None, None, 8, 2)[0], convert.soft_ellipse(8))


def test_soft_ellipse_is_the_synthetic_face_and_keeps_the_border():
  m = convert.soft_ellipse(32)
  assert m[18, 16, 0] == pytest.approx(1.0) and m[0, 0, 0] == 0.0 and m[18, 0, 0] == 0.0
  assert m[2, 16, 0] == 0.0 and m[18, 3, 0] == 0.0  # hair and ears stay the frame's
  assert 0.0 < m[18, 7, 0] < 1.0 or 0.0 < m[18, 8, 0] < 1.0  # a soft edge, not a step
  # Its centre and radii are the moments of the synthetic data's mean face mask.
  masks = [render.render(render.identity_traits(0, i), render.sample_factors(np.random.default_rng([i, k])), 32).mask[..., 0]
           for i in range(20) for k in range(3)]
  w = np.mean(masks, 0) / np.mean(masks, 0).sum()
  t = (np.arange(32) + 0.5) / 32
  y, x = np.meshgrid(t, t, indexing="ij")
  cx, cy = (w * x).sum(), (w * y).sum()
  got = {"cx": cx, "cy": cy, "rx": 2 * np.sqrt((w * (x - cx) ** 2).sum()), "ry": 2 * np.sqrt((w * (y - cy) ** 2).sum())}
  for k, v in convert.FACE_ELLIPSE.items():
    assert got[k] == pytest.approx(v, abs=0.015), (k, got)
