import jax
import jax.numpy as jnp
import numpy as np

from experiments import step_profile


def test_attribute_splits_concurrent_time_equally():
  ops = {n: step_profile.Op(n, "l", "forward", "elementwise", 0.0) for n in "abc"}
  # a: [0, 10), b: [5, 15) overlaps it, c: [20, 30) alone; times in ns
  got = step_profile.attribute([(0, 10, "a"), (5, 15, "b"), (20, 30, "c"), (0, 99, "unknown")], ops)
  np.testing.assert_allclose([got["a"], got["b"], got["c"]], [7.5e-9, 7.5e-9, 10e-9])
  assert "unknown" not in got


def _loss(x, w):
  return jnp.sum(jnp.tanh(x @ w))


def test_hlo_ops_counts_every_matmul_of_a_gradient():
  x, w = jnp.ones((64, 32)), jnp.ones((32, 16))
  hlo = jax.jit(jax.grad(_loss, (0, 1))).lower(x, w).compile().as_text()
  ops = step_profile.hlo_ops(hlo)
  matmuls = [o for o in ops.values() if o.kind == "matmul"]
  # forward, input gradient and weight gradient: three (64 x 32 x 16) products
  assert sum(o.flops for o in matmuls) == 3 * 2 * 64 * 32 * 16, matmuls
  assert {o.phase for o in matmuls} == {"forward", "backward"}


def test_profile_attributes_no_more_than_the_wall_time():
  x = jax.random.normal(jax.random.key(0), (512, 512))
  f = jax.jit(lambda x: jnp.tanh(x @ x) @ x)
  compiled = f.lower(x).compile()
  jax.block_until_ready(compiled(x))
  p = step_profile.profile(compiled.as_text(), lambda: jax.block_until_ready(compiled(x)), steps=2)
  assert p.wall_s > 0 and p.op_s
  assert sum(p.op_s.values()) <= p.wall_s * 1.001 + 1e-6
  kinds = {k[0] for k, _, _ in p.by("kind")}
  assert "matmul" in kinds, p.op_s
  assert "untraced" in p.table("kind") and p.summary().startswith("matmuls: ")
