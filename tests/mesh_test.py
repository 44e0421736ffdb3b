"""The train step on a mesh of 8 fake CPU devices equals one device with the same global batch, and
so does the device augmentation."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import sys, jax, numpy as np
    from experiments.configs import original
    from encdec_jax import assemble, config as config_lib
    from encdec_jax.program import Trainer
    c = original.get_config("tiny")
    c.train.batch_size = 8
    cfg = assemble.checked_config(c)
    rng = np.random.default_rng(0)
    batches = [{k: rng.random((2, 8, 16, 16, 3), dtype=np.float32) for k in ("inputs", "targets")}
               for _ in range(3)]
    out = {}
    for n in (1, 8):
      tr = Trainer(cfg, devices=jax.devices()[:n])
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
    # data.augment_on='device' on the 8-device mesh (what 'auto' picks on a multi-GPU box): the
    # host's uint8 rows and draws, augmented sharded, give the numpy pipeline's batch.
    from encdec_jax.data import device_augment
    from encdec_jax.data.pipeline import Augment, TrainSource
    assert device_augment.on_device("auto", [type("D", (), {"platform": "gpu"})()] * 8)
    c.data.augment_on = "device"
    cfg = assemble.checked_config(c)
    tr = Trainer(cfg, devices=jax.devices()[:8])
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    src = TrainSource(images, images, np.repeat([0, 1], 20), 2, 8, 3, Augment.from_config(cfg.data),
                      rows=tr.process_rows())
    assert tr.augment_on_device and "images" in tr.host_batch(src, 4)
    got, want = tr.device_batch(tr.host_batch(src, 4)), src.batch(4)
    assert len(got["inputs"].sharding.device_set) == 8
    for k in ("inputs", "targets"):
      np.testing.assert_allclose(np.asarray(got[k]), want[k], atol=2e-5)
    # Members on the same mesh: the member axis leads, the data axis still splits each batch; each
    # member's loss is the one run's above (members_test: a member on one device is its run alone).
    from encdec_jax import members
    c.data.augment_on = "host"
    g = members.Group([assemble.checked_config(c)] * 2, devices=jax.devices()[:8])
    state = g.init()
    for b in batches:
      state, m = g.step_fn(state, g.device_batch([b, b]), g.hyper)
    assert len(state.params["params"]["encoder"]["bottleneck"]["kernel"].sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(m["train/loss"]), [out[8][0][-1]] * 2, rtol=1e-5)
    print("devices", jax.device_count(), "losses", out[8][0])
""")


def test_eight_fake_devices_match_one():
  # The suite's XLA flags kept (conftest.py), 8 devices added: both sides of every comparison
  # run in this one process, so they share whatever the flags are (cold: 9.8 s against 14.1 s
  # at XLA's defaults).
  env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
  r = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "devices 8" in r.stdout
