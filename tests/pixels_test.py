"""The one bilinear sampler (encdec_jax/pixels.py) against scipy, inside and beyond the border, in
numpy and in jax.numpy."""
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from encdec_jax import pixels


def test_remap_bilinear_matches_scipy_with_edges_repeated():
  rng = np.random.default_rng(0)
  img = rng.uniform(0, 1, (2, 9, 11, 3)).astype(np.float32)
  ys = rng.uniform(-3, 12, (2, 5, 7))
  xs = rng.uniform(-3, 14, (2, 5, 7))
  got = pixels.remap_bilinear(img, ys, xs)
  for b in range(2):
    for c in range(3):
      want = ndimage.map_coordinates(img[b, ..., c], [ys[b], xs[b]], order=1, mode="nearest")
      np.testing.assert_allclose(got[b, ..., c], want, atol=1e-6)
  jgot = pixels.remap_bilinear(jnp.asarray(img), jnp.asarray(ys, jnp.float32), jnp.asarray(xs, jnp.float32), jnp)
  np.testing.assert_allclose(np.asarray(jgot), got, atol=1e-5)


def test_to_unit_float_scales_bytes_and_keeps_floats():
  np.testing.assert_allclose(pixels.to_unit_float(np.array([0, 51, 255], np.uint8)), [0.0, 0.2, 1.0])
  assert pixels.to_unit_float(np.array([0.5], np.float64)).dtype == np.float32
  assert float(pixels.to_unit_float(np.array([0.5]))[0]) == 0.5
  assert pixels.to_unit_float(jnp.array([255], jnp.uint8), jnp).dtype == jnp.float32
