import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import losses


def _imgs(shape, seed):
  return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_mae_mse_against_numpy():
  a, b = _imgs((3, 8, 8, 3), 0), _imgs((3, 8, 8, 3), 1)
  np.testing.assert_allclose(losses.mae(a, b), np.abs(a - b).mean(axis=(1, 2, 3)), rtol=1e-6)
  np.testing.assert_allclose(losses.mse(a, b), ((a - b) ** 2).mean(axis=(1, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("size", [16, 32, 11])
def test_ssim_against_tensorflow(size):
  tf = pytest.importorskip("tensorflow")
  a = _imgs((2, size, size, 3), 2)
  b = np.clip(a + 0.1 * _imgs((2, size, size, 3), 3) - 0.05, 0, 1).astype(np.float32)
  ref = tf.image.ssim(a, b, max_val=1.0, filter_size=11, filter_sigma=1.5).numpy()
  np.testing.assert_allclose(1 - np.asarray(losses.ssim(a, b)), ref, atol=1e-4)


def test_identical_inputs_zero_loss_finite_grads():
  a = jnp.asarray(_imgs((2, 16, 16, 3), 4))
  flat = jnp.full((2, 16, 16, 3), 0.5)
  for name, fn in losses.LOSSES.items():
    for x in (a, flat):
      assert float(jnp.max(jnp.abs(fn(x, x)))) < 1e-5, name
      g = jax.grad(lambda p: fn(p, x).sum())(x)
      assert bool(jnp.all(jnp.isfinite(g))), name


def test_mask_of_ones_equals_unmasked_and_outside_pixels_ignored():
  a, b = _imgs((2, 16, 16, 3), 5), _imgs((2, 16, 16, 3), 6)
  ones = np.ones((2, 16, 16, 1), np.float32)
  mask = np.zeros((2, 16, 16, 1), np.float32)
  mask[:, 4:12, 4:12] = 1
  b2 = b.copy()
  b2[:, :2] = 0.0  # change only pixels outside the mask
  for name in ("mae", "mse"):
    fn = losses.LOSSES[name]
    np.testing.assert_allclose(fn(a, b, ones), fn(a, b), rtol=1e-6)
    np.testing.assert_allclose(fn(a, b, mask), fn(a, b2, mask), rtol=1e-6)


def test_spec_parsing_and_combination():
  terms = losses.parse_loss_spec("ssim:1.0, mae:0.5")
  assert terms == (losses.LossTerm("ssim", 1.0), losses.LossTerm("mae", 0.5))
  assert losses.parse_loss_spec("mse") == (losses.LossTerm("mse", 1.0),)
  a, b = _imgs((2, 16, 16, 3), 7), _imgs((2, 16, 16, 3), 8)
  total, parts = losses.combined_loss(terms, a, b)
  np.testing.assert_allclose(total, parts["ssim"] + 0.5 * parts["mae"], rtol=1e-6)


@pytest.mark.parametrize("spec,match", [
    ("nope:1", r"unknown loss 'nope'.*\['mae', 'mse', 'ssim'\]"),
    ("mae:-1", r"'mae'.*weights must be finite and > 0"),
    ("mae:x", r"'mae'.*not a number"),
    ("mae:1,mae:2", "appears twice"),
    ("", "non-empty"),
])
def test_bad_specs_name_the_term(spec, match):
  with pytest.raises(losses.LossSpecError, match=match):
    losses.parse_loss_spec(spec)
