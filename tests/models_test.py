import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import models
from experiments import flops
from encdec_jax.config import ModelConfig
from tests.helpers import init_params, jit_quick

TINY = ModelConfig(width=1 / 16, bottleneck=16, resolution=16, num_identities=3, conv_impl="xla")


def _init(cfg):
  m = models.build_model(cfg)
  return m, init_params(m, cfg)


@pytest.mark.parametrize("h,cin,cout,k", [(8, 5, 7, 5), (16, 3, 4, 5), (9, 2, 3, 5), (8, 4, 4, 3)])
def test_s2d_strided_conv_equals_direct(h, cin, cout, k):
  x = jax.random.normal(jax.random.key(0), (2, h, h, cin))
  w = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
  p = k // 2
  direct = jax.lax.conv_general_dilated(x, w, (2, 2), ((p, p), (p, p)), dimension_numbers=models.CONV_DIMENSIONS)
  s2d, im2col = jit_quick(lambda x, w: (models.strided_conv_s2d(x, w, p), models.conv_im2col(x, w, 2, p)))(x, w)
  np.testing.assert_allclose(s2d, direct, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(im2col, direct, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("h,k,cin,cout", [(8, 3, 3, 4), (5, 5, 3, 4), (4, 1, 3, 4), (8, 5, 6, 3), (7, 3, 5, 2)])
def test_im2col_stride1_equals_xla(h, k, cin, cout):
  """cout < cin takes the multiply-then-shift form (conv_taps_out): same values and gradients."""
  x = jax.random.normal(jax.random.key(0), (2, h, h, cin))
  w = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
  p = k // 2
  xla = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), ((p, p), (p, p)),
                                                  dimension_numbers=models.CONV_DIMENSIONS)
  ours = lambda x, w: models.conv_im2col(x, w, 1, p)
  np.testing.assert_allclose(jit_quick(ours)(x, w), xla(x, w), atol=2e-5, rtol=1e-5)
  grads = [jit_quick(jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), (0, 1)))(x, w) for f in (ours, xla)]
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_conv_impls_same_function_same_params():
  outs = []
  for impl in models.CONV_IMPLS:
    cfg = ModelConfig(width=1 / 16, bottleneck=8, resolution=32, num_identities=2, conv_impl=impl)
    m, p = _init(cfg)
    outs.append((p, m))
  x = jax.random.uniform(jax.random.key(2), (2, 3, 32, 32, 3))
  ref = jit_quick(outs[0][1].apply)(outs[0][0], x)
  for p, m in outs[1:]:
    assert jax.tree.structure(p) == jax.tree.structure(outs[0][0])
    np.testing.assert_allclose(jit_quick(m.apply)(outs[0][0], x), ref, atol=1e-5)


def test_encoder_shared_decoders_per_identity():
  m, params = _init(TINY)
  p = params["params"]
  assert sorted(p) == ["decoders_0", "decoders_1", "decoders_2", "encoder"]
  x = jax.random.uniform(jax.random.key(1), (3, 2, 16, 16, 3))

  def loss_identity0(params):  # only identity 0's reconstruction
    return jnp.mean(m.apply(params, x)[0])

  g = jit_quick(jax.grad(loss_identity0))(params)["params"]
  norm = lambda t: float(sum(jnp.sum(jnp.abs(a)) for a in jax.tree.leaves(t)))
  assert norm(g["encoder"]) > 0 and norm(g["decoders_0"]) > 0
  assert norm(g["decoders_1"]) == 0 and norm(g["decoders_2"]) == 0
  # Decoders are separate parameter sets, not views of one.
  d0, d1 = jax.tree.leaves(p["decoders_0"]), jax.tree.leaves(p["decoders_1"])
  assert any(not np.array_equal(a, b) for a, b in zip(d0, d1))


@pytest.mark.parametrize("res,n", [(16, 2), (32, 3)])
def test_shapes_and_swap_range(res, n):
  cfg = ModelConfig(width=1 / 16, bottleneck=8, resolution=res, num_identities=n, conv_impl="xla")
  m, params = _init(cfg)
  x = jax.random.uniform(jax.random.key(3), (n, 2, res, res, 3))

  @jit_quick
  def outputs(params, x):
    return (m.apply(params, x), m.apply(params, x[0], 1, method="swap"),
            m.apply(params, x[0], method="decode_all"))

  recon, s, allo = outputs(params, x)
  assert recon.shape == (n, 2, res, res, 3)
  assert s.shape == (2, res, res, 3)
  assert float(s.min()) >= 0 and float(s.max()) <= 1
  assert allo.shape == (n, 2, res, res, 3)
  np.testing.assert_allclose(allo[1], s, atol=1e-6)
  np.testing.assert_allclose(allo[0], recon[0], atol=1e-6)


@pytest.mark.parametrize("impl", ["xla", "im2col"])
def test_analytic_flops_match_xla_cost_analysis(impl):
  cfg = ModelConfig(width=0.25, bottleneck=64, resolution=32, num_identities=2, conv_impl=impl)
  m, params = _init(cfg)
  x = jnp.zeros((4, 32, 32, 3))
  f = jax.jit(lambda p, x: m.apply(p, x, 0, method="swap")).lower(params, x).compile()
  xla = f.cost_analysis()["flops"] / 4
  assert abs(xla - flops.analytic_forward_flops(cfg)) / xla < 0.1


def test_unknown_architecture_lists_valid_names():
  with pytest.raises(ValueError, match=r"'nope'.*original"):
    models.build_model(ModelConfig(arch="nope"))
