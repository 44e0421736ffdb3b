"""The train step on a mesh of 8 fake CPU devices equals one device with the same global batch."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import sys, jax, numpy as np
    from experiments.configs import original
    from encdec_jax import assemble, config as config_lib, train
    c = original.get_config("tiny")
    c.train.batch_size = 8
    cfg = assemble.checked_config(c)
    rng = np.random.default_rng(0)
    batches = [{k: rng.random((2, 8, 16, 16, 3), dtype=np.float32) for k in ("inputs", "targets")}
               for _ in range(3)]
    out = {}
    for n in (1, 8):
      tr = train.Trainer(cfg, devices=jax.devices()[:n])
      state = tr.init()
      losses = []
      for b in batches:
        state, m = tr.step_fn(state, tr.device_batch(b))
        losses.append(float(m["train/loss"]))
      assert tr.step_fn._cache_size() == 1
      out[n] = (losses, [np.asarray(x) for x in jax.tree.leaves(state.params)])
    np.testing.assert_allclose(out[1][0], out[8][0], rtol=1e-5)
    for a, b in zip(out[1][1], out[8][1]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print("devices", jax.device_count(), "losses", out[8][0])
""")


def test_eight_fake_devices_match_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  r = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "devices 8" in r.stdout
