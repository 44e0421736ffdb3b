"""Every architecture: shapes, what is shared and what is per identity, swap, and that it learns."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import models
from encdec_jax.config import ModelConfig
from tests.helpers import init_params, jit_quick, quick_jit, train_steps

N = 3  # identities: odd one out shows per-identity parts are N (not 2)


def _cfg(arch, **kw):
  base = dict(arch=arch, width=1 / 16, bottleneck=16, resolution=16, num_identities=N,
              conv_impl="xla", e_dims=64, d_dims=32)
  base.update(kw)
  return ModelConfig(**base)


# Per architecture: top-level parameter groups, and for a reconstruction of identity i, the groups
# its gradient must reach (everything else must get exactly zero).
EXPECTED = {
    "original": ({"encoder", "decoders_0", "decoders_1", "decoders_2"},
                 lambda i: {"encoder", f"decoders_{i}"}),
    "lightweight": ({"encoder", "decoders_0", "decoders_1", "decoders_2"},
                    lambda i: {"encoder", f"decoders_{i}"}),
    "dfaker": ({"encoder", "decoders_0", "decoders_1", "decoders_2"},
               lambda i: {"encoder", f"decoders_{i}"}),
    "iae": ({"encoder", "inters_0", "inters_1", "inters_2", "inter_shared", "decoder"},
            lambda i: {"encoder", f"inters_{i}", "inter_shared", "decoder"}),
    "df": ({"encoder", "inter", "decoders_0", "decoders_1", "decoders_2"},
           lambda i: {"encoder", "inter", f"decoders_{i}"}),
    # identity 0 is DeepFaceLab's "src": inter_all only; identity i >= 1 has inters_{i-1}.
    "liae": ({"encoder", "inter_all", "inters_0", "inters_1", "decoder"},
             lambda i: {"encoder", "inter_all", "decoder"} | ({f"inters_{i - 1}"} if i else set())),
}


def test_registry_is_complete():
  assert set(models.ARCHITECTURES) == set(EXPECTED)


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def arch_model(request):
  cfg = _cfg(request.param)
  m = models.build_model(cfg)
  return request.param, cfg, m, init_params(m, cfg)


def test_shapes_and_sharing(arch_model):
  arch, cfg, m, params = arch_model
  groups, reached = EXPECTED[arch]
  assert set(params["params"]) == groups
  scale = models.ARCHITECTURES[arch].output_scale
  x = jax.random.uniform(jax.random.key(1), (N, 2, 16, 16, 3))
  y = jax.eval_shape(m.apply, params, x)
  assert y.shape == (N, 2, 16 * scale, 16 * scale, 3)

  def grad_mass(p):  # per identity i: |d mean(recon_i) / d group| summed per parameter group
    out = []
    for i in range(N):
      g = jax.grad(lambda p: jnp.mean(m.apply(p, x)[i]))(p)["params"]
      out.append({k: sum(jnp.abs(a).sum() for a in jax.tree.leaves(v)) for k, v in g.items()})
    return out

  for i, mass in enumerate(quick_jit(grad_mass, params)(params)):
    touched = {k for k, v in mass.items() if float(v) > 0}
    assert touched == reached(i), (arch, i, touched)


def test_swap_is_decode_of_target_code(arch_model):
  arch, cfg, m, params = arch_model
  x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3))
  everyone = quick_jit(lambda p, x: m.apply(p, x, method="decode_all"), params, x)(params, x)
  scale = models.ARCHITECTURES[arch].output_scale
  assert everyone.shape == (N, 2, 16 * scale, 16 * scale, 3)
  assert float(everyone.min()) >= 0.0 and float(everyone.max()) <= 1.0
  for j in range(N):
    s = quick_jit(lambda p, x, j=j: m.apply(p, x, j, method="swap"), params, x)(params, x)
    np.testing.assert_allclose(s, everyone[j], atol=1e-6)
  # Swaps into different identities differ (each identity has its own path), also for LIAE.
  assert float(jnp.abs(everyone[0] - everyone[1]).max()) > 1e-4


def test_learned_mask_channel_every_arch():
  for arch in EXPECTED:
    cfg = _cfg(arch, learn_mask=True, num_identities=2)
    m = models.build_model(cfg)
    x = jnp.zeros((2, 1, 16, 16, 3))
    y = jax.eval_shape(lambda x: m.apply(m.init(jax.random.key(0), x), x), x)
    assert y.shape[-1] == 4, arch


@pytest.mark.parametrize("mode", ["shuffle", "resize"])
def test_upscale_modes_double_the_size(mode):
  up = models.Upscale(5, impl="xla", mode=mode)
  x = jnp.ones((1, 4, 4, 3))
  p = up.init(jax.random.key(0), x)
  assert up.apply(p, x).shape == (1, 8, 8, 5)


def test_resize_upscale_is_nearest_then_conv():
  up = models.Upscale(2, impl="xla", mode="resize")
  x = jax.random.normal(jax.random.key(0), (1, 3, 3, 2))
  p = up.init(jax.random.key(1), x)
  nn_x = np.repeat(np.repeat(np.asarray(x), 2, 1), 2, 2)
  conv = models.Conv(2, 3, 1, impl="xla")
  ref = jax.nn.leaky_relu(conv.apply({"params": p["params"]["Conv_0"]}, nn_x), 0.1)
  np.testing.assert_allclose(up.apply(p, x), ref, atol=1e-6)


def test_pixel_norm_unit_rms():
  x = jax.random.normal(jax.random.key(0), (4, 37)) * 5
  y = np.asarray(models.pixel_norm(x))
  np.testing.assert_allclose(np.sqrt((y ** 2).mean(-1)), 1.0, rtol=1e-4)


def test_resized_target_matches_tf_bilinear():
  """dfaker's loss compares its 2x output with the target resized 2x: bilinear, half-pixel
  centres, exactly what tf.image.resize does."""
  import tensorflow as tf
  x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
  ours = models.to_resolution(jnp.asarray(x), 16)
  ref = tf.image.resize(x, (16, 16), method="bilinear").numpy()
  np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_each_architecture_learns(arch, tiny_config, tiny_data):
  """120 steps at tiny width: the loss falls (train step, not special-cased)."""
  _, _, losses = train_steps(tiny_config(**{"model.arch": arch, "model.d_dims": 32}), tiny_data[0], 120)
  print(arch, losses[:10].mean(), losses[-20:].mean())
  assert np.all(np.isfinite(losses)), arch
  # Measured (sum of 2 identities' MAE): every architecture falls by 20-32% in 120 steps.
  assert losses[-20:].mean() < 0.85 * losses[:10].mean(), (arch, losses[:10].mean(), losses[-20:].mean())


@pytest.mark.parametrize("arch", ["original", "liae"])
def test_identity_critic_is_its_own_group_on_the_shared_code(arch):
  """model.critic_width > 0 adds one parameter group, 'critic', reading the shared code (what
  `reconstruct` returns) and naming one of N identities; without it there is none."""
  cfg = _cfg(arch, critic_width=8)
  m = models.build_model(cfg)
  abstract = lambda c: jax.eval_shape(  # noqa: E731
      lambda: models.build_model(c).init(jax.random.key(0), jnp.zeros((N, 1, 16, 16, 3))))
  with_critic, without = abstract(cfg)["params"], abstract(_cfg(arch))["params"]
  assert set(with_critic) - set(without) == {"critic"}
  x = jnp.zeros((N, 3, 16, 16, 3))
  _, z = jax.eval_shape(lambda p: m.apply(p, x, method="reconstruct"), {"params": with_critic})
  logits = jax.eval_shape(lambda p: m.apply(p, jnp.zeros((5,) + z.shape[2:]), method="critic_logits"),
                          {"params": with_critic})
  assert logits.shape == (5, N)
  assert with_critic["critic"]["Dense_0"]["kernel"].shape == (int(np.prod(z.shape[2:])), 8)


@pytest.mark.parametrize("arch", ["original", "dfaker"])
def test_realism_critic_is_its_own_group_on_decoded_images(arch):
  """model.realism_width > 0 adds one parameter group, 'realism', reading RGB images at the
  decoders' output size (dfaker's 2x too) and giving patch logits for the identity asked for; the
  identities' answers differ (one output channel each)."""
  cfg = _cfg(arch, realism_width=4)
  m = models.build_model(cfg)
  with_critic = init_params(m, cfg)
  x = jnp.zeros((N, 1, 16, 16, 3))
  without = jax.eval_shape(lambda: models.build_model(_cfg(arch)).init(jax.random.key(0), x))
  assert set(with_critic["params"]) - set(without["params"]) == {"realism"}
  side = jax.eval_shape(lambda: m.apply(with_critic, x)).shape[2]
  img = jax.random.uniform(jax.random.key(1), (5, side, side, 3))
  critic = jit_quick(lambda p, y, j: m.apply(p, y, j, method="realism_logits"), static_argnums=2)
  logits = [critic(with_critic, img, j) for j in range(N)]
  assert logits[0].shape == (5, side // 4, side // 4)
  assert not np.allclose(logits[0], logits[1])


def _code_gaps(modes, x, y) -> dict:
  """Per model.input_norm mode, how far a fresh Original's codes of x and y are apart: the
  largest difference relative to the largest code of x."""
  gaps = {}
  for mode in modes:
    cfg = _cfg("original", input_norm=mode)
    m = models.build_model(cfg)
    p = init_params(m, cfg)
    encode = jit_quick(lambda q, v: m.apply(q, v, method="encode"))
    a, b = (np.asarray(encode(p, v)) for v in (x, y))
    gaps[mode] = np.abs(a - b).max() / np.abs(a).max()
  return gaps


def test_input_norm_image_makes_the_code_blind_to_each_images_tone_and_contrast():
  """model.input_norm="image": the code of a crop is the code of that crop after any per-image,
  per-channel gain (> 0) and offset, up to the std's floor (0.3% here); with "none" it is not."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(0.0, 1.0, (2, 16, 16, 3)), jnp.float32)
  gain = jnp.asarray(rng.uniform(0.5, 1.5, (2, 1, 1, 3)), jnp.float32)
  moved = gain * x + jnp.asarray(rng.uniform(-0.1, 0.3, (2, 1, 1, 3)), jnp.float32)
  gap = _code_gaps(("none", "image"), x, moved)
  assert gap["image"] < 0.01 and gap["none"] > 0.1, gap


def test_input_norm_local_adds_the_crops_local_contrast_blind_to_gain_and_offset():
  """model.input_norm="local": the encoder reads 6 channels, the crop itself and its local contrast
  normalisation, which a per-channel gain (> 0) and offset leave unchanged up to the contrast's
  floor; a flat crop's normalisation is 0 (the blur keeps a flat image flat at the edges)."""
  from encdec_jax.models.archs import encoder_input
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(0.0, 1.0, (2, 16, 16, 3)), jnp.float32)
  moved = 0.8 * x + 0.1
  a, b = np.asarray(encoder_input(x, "local")), np.asarray(encoder_input(moved, "local"))
  assert a.shape == (2, 16, 16, 6)
  np.testing.assert_array_equal(a[..., :3], np.asarray(x))
  np.testing.assert_allclose(a[..., 3:], b[..., 3:], atol=0.02)
  assert np.abs(a[..., 3:]).mean() > 0.5  # a textured crop's contrast is of order 1
  np.testing.assert_allclose(encoder_input(jnp.full((1, 16, 16, 3), 0.4), "local")[..., 3:], 0.0, atol=1e-5)


def test_input_norm_contrast_reads_a_light_feature_and_a_dark_one_alike(monkeypatch):
  """model.input_norm="contrast": the encoder reads the crop and, as 3 more channels, the magnitude
  of "local"'s normalisation in its own window (CONTRAST_SIGMA), the same for a crop and its
  negative (a light brow on dark skin, a dark brow on pale skin). "contrast_only" reads the
  magnitude alone, so a crop and its negative give one code; with "local" they do not."""
  from encdec_jax.models import archs
  from encdec_jax.models.archs import encoder_input
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.uniform(0.0, 1.0, (2, 16, 16, 3)), jnp.float32)
  a, neg = np.asarray(encoder_input(x, "contrast")), np.asarray(encoder_input(1.0 - x, "contrast"))
  assert a.shape == (2, 16, 16, 6) and a[..., 3:].min() >= 0.0
  np.testing.assert_array_equal(a[..., :3], np.asarray(x))
  local = np.asarray(encoder_input(x, "local"))[..., 3:]
  assert np.abs(a[..., 3:] - np.abs(local)).max() > 0.05  # another window than "local"'s
  monkeypatch.setattr(archs, "LOCAL_SIGMA", archs.CONTRAST_SIGMA)
  np.testing.assert_allclose(a[..., 3:], np.abs(np.asarray(encoder_input(x, "local"))[..., 3:]), atol=1e-6)
  np.testing.assert_allclose(a[..., 3:], neg[..., 3:], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(encoder_input(x, "contrast_only")), a[..., 3:])
  gap = _code_gaps(("local", "contrast_only"), x, 1.0 - x)
  assert gap["contrast_only"] < 1e-4 and gap["local"] > 0.1, gap
