"""Every loss against an independent reference: TensorFlow's image ops where they exist, else a
float64 NumPy transcription of the paper's formula written here, not shared with the library."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import config as config_lib, losses
from tests.helpers import jit_quick


def _rand(shape, seed):
  return np.random.default_rng(seed).random(shape).astype(np.float32)


def structured(kind, shape, seed):
  b, h, w, c = shape
  if kind == "noise":
    return _rand(shape, seed)
  if kind == "constant":
    return np.full(shape, 0.3 + 0.1 * seed % 5 / 5, np.float32)
  if kind == "gradient":
    g = np.linspace(0, 1, w, dtype=np.float32)[None, None, :, None]
    return np.broadcast_to(g * np.linspace(0.5, 1, h, dtype=np.float32)[None, :, None, None], shape).copy()
  raise ValueError(kind)


PAIRS = [("noise", "noise"), ("constant", "noise"), ("gradient", "noise"), ("gradient", "constant")]


def _pair(kinds, shape, seed=0):
  a = structured(kinds[0], shape, seed)
  b = structured(kinds[1], shape, seed + 1)
  if kinds[0] == kinds[1] == "noise":
    b = np.clip(a + 0.2 * (b - 0.5), 0, 1).astype(np.float32)
  return a, b


# ---- float64 NumPy references -------------------------------------------------------------

def ref_logcosh(a, b):
  return np.log(np.cosh(a - b)).mean(axis=(1, 2, 3))


def ref_smooth_l1(a, b, delta):
  d = np.abs(a - b)
  return np.where(d <= delta, 0.5 * d ** 2, delta * (d - 0.5 * delta)).mean(axis=(1, 2, 3))


def ref_robust(a, b, alpha, c):
  x = (a - b) / c
  if alpha == 2:
    r = 0.5 * x ** 2
  elif alpha == 0:
    r = np.log(0.5 * x ** 2 + 1)
  else:
    r = abs(alpha - 2) / alpha * (((x ** 2) / abs(alpha - 2) + 1) ** (alpha / 2) - 1)
  return r.mean(axis=(1, 2, 3))


def ref_pgd(a, b):
  d = a - b
  return (np.abs(np.diff(d, axis=2)).mean(axis=(1, 2, 3)) + np.abs(np.diff(d, axis=1)).mean(axis=(1, 2, 3)))


def _corr3(x, k):  # VALID 3x3 correlation per image/channel
  h, w = x.shape[1] - 2, x.shape[2] - 2
  return sum(k[i, j] * x[:, i:i + h, j:j + w] for i in range(3) for j in range(3))


def ref_gmsd(a, b, c=0.0026):
  px = np.array([[1, 0, -1]] * 3, np.float64) / 3

  def mag(x):
    return np.sqrt(_corr3(x, px) ** 2 + _corr3(x, px.T) ** 2)

  ma, mb = mag(a), mag(b)
  gms = (2 * ma * mb + c) / (ma ** 2 + mb ** 2 + c)
  return gms.std(axis=(1, 2)).mean(axis=-1)


def ref_ffl(a, b, alpha=1.0):
  fa = np.fft.fft2(np.moveaxis(a, -1, 1), norm="ortho")
  fb = np.fft.fft2(np.moveaxis(b, -1, 1), norm="ortho")
  d = np.abs(fa - fb) ** 2
  w = np.sqrt(d) ** alpha
  mx = w.max(axis=(2, 3), keepdims=True)
  w = np.where(mx > 0, w / np.where(mx > 0, mx, 1), 0)
  return (w * d).mean(axis=(1, 2, 3))


def _gauss(size=5, sigma=1.0):
  x = np.arange(size) - (size - 1) / 2
  g = np.exp(-0.5 * (x / sigma) ** 2)
  return g / g.sum()


def _blur(x, g):
  p = len(g) // 2
  x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
  h, w = x.shape[1] - 2 * p, x.shape[2] - 2 * p
  y = sum(g[i] * x[:, i:i + h] for i in range(len(g)))
  return sum(g[j] * y[:, :, j:j + w] for j in range(len(g)))


def ref_laploss(a, b, levels):
  levels = min(levels, int(np.log2(a.shape[1])) - 1)  # the documented cap: residual >= 2 px
  g = _gauss()
  total = 0.0

  def pyr(x):
    out = []
    for _ in range(levels):
      down = _blur(x, g)[:, ::2, ::2]
      up = down.repeat(2, axis=1).repeat(2, axis=2)[:, :x.shape[1], :x.shape[2]]
      out.append(x - _blur(up, g))
      x = down
    return out + [x]

  for j, (la, lb) in enumerate(zip(pyr(a), pyr(b))):
    total = total + 2.0 ** (-2 * j) * np.abs(la - lb).mean(axis=(1, 2, 3))
  return total


NUMPY_REFS = {
    "mae": lambda a, b: np.abs(a - b).mean(axis=(1, 2, 3)),
    "mse": lambda a, b: ((a - b) ** 2).mean(axis=(1, 2, 3)),
    "logcosh": ref_logcosh,
    "smooth_l1": lambda a, b: ref_smooth_l1(a, b, 0.1),
    "robust": lambda a, b: ref_robust(a, b, 1.0, 0.1),
    "l_inf_norm": lambda a, b: np.abs(a - b).max(axis=(1, 2, 3)),
    "pixel_gradient_diff": ref_pgd,
    "gmsd": ref_gmsd,
    "ffl": ref_ffl,
    "laploss": lambda a, b: ref_laploss(a, b, 4),
}


@pytest.mark.parametrize("name", sorted(NUMPY_REFS))
@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("kinds", PAIRS, ids=lambda k: "-".join(k))
def test_against_numpy_reference(name, size, kinds):
  a, b = _pair(kinds, (2, size, size, 3))
  got = np.asarray(losses.LOSSES[name](a, b))
  want = NUMPY_REFS[name](a.astype(np.float64), b.astype(np.float64))
  assert got.shape == (2,)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("alpha", [2.0, 0.0, 1.0, -2.0, 0.5, 4.0])
def test_robust_loss_family(alpha):
  a, b = _pair(("noise", "noise"), (2, 16, 16, 3))
  got = losses.robust(a, b, alpha=alpha, scale=0.2)
  np.testing.assert_allclose(got, ref_robust(a.astype(np.float64), b.astype(np.float64), alpha, 0.2), rtol=2e-4)
  if alpha == 2.0:  # the general formula tends to the special cases
    np.testing.assert_allclose(losses.robust(a, b, alpha=1.999, scale=0.2), got, rtol=2e-3)


@pytest.mark.parametrize("size", [16, 32, 11])
@pytest.mark.parametrize("kinds", PAIRS, ids=lambda k: "-".join(k))
def test_ssim_against_tensorflow(size, kinds):
  tf = pytest.importorskip("tensorflow")
  a, b = _pair(kinds, (2, size, size, 3))
  ref = tf.image.ssim(a, b, max_val=1.0, filter_size=11, filter_sigma=1.5).numpy()
  np.testing.assert_allclose(1 - np.asarray(losses.ssim(a, b)), ref, atol=1e-4)


@pytest.mark.parametrize("size", [64, 176])
@pytest.mark.parametrize("kinds", [("noise", "noise"), ("gradient", "noise")], ids=lambda k: "-".join(k))
def test_ms_ssim_against_tensorflow(size, kinds):
  tf = pytest.importorskip("tensorflow")
  a, b = _pair(kinds, (2, size, size, 3))
  win = losses.structural.ms_ssim_window(size)
  assert win == (4 if size == 64 else 11)
  ref = tf.image.ssim_multiscale(a, b, max_val=1.0, filter_size=win, filter_sigma=1.5).numpy()
  np.testing.assert_allclose(1 - np.asarray(jit_quick(losses.LOSSES["ms_ssim"])(a, b)), ref, atol=2e-4)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_identical_inputs_zero_loss_finite_grads(name):
  fn = jit_quick(losses.LOSSES[name])
  grad = jit_quick(jax.grad(lambda p, x: losses.LOSSES[name](p, x).sum()))
  for x in (jnp.asarray(_rand((2, 32, 32, 3), 4)), jnp.full((2, 32, 32, 3), 0.5)):
    assert float(jnp.max(jnp.abs(fn(x, x)))) < 1e-4, name
    assert bool(jnp.all(jnp.isfinite(grad(x, x)))), name
    assert bool(jnp.all(jnp.isfinite(grad(x * 0.9, x)))), name


# ffl's weights carry no gradient by design (checked below through alpha=0); l_inf's max moves
# between pixels under a finite step (checked below as a one-hot gradient).
@pytest.mark.parametrize("name", sorted(set(losses.LOSSES) - {"ffl", "l_inf_norm"}))
def test_gradient_matches_finite_differences(name):
  size = 64 if name == "ms_ssim" else 16  # at 16 px its coarsest scale is one pixel
  a, b = _pair(("noise", "noise"), (1, size, size, 3), seed=3)
  a = np.clip(a, 0.05, 0.95)
  v = np.random.default_rng(9).normal(size=a.shape).astype(np.float32)
  loss = lambda x: losses.LOSSES[name](x, jnp.asarray(b))[0]  # noqa: E731
  f, g = jit_quick(loss), np.asarray(jit_quick(jax.grad(loss))(jnp.asarray(a)))
  eps = 1e-2 if name == "ms_ssim" else 1e-3  # 1 - MS-SSIM sums float32 round-off of many terms
  fd = (float(f(jnp.asarray(a + eps * v))) - float(f(jnp.asarray(a - eps * v)))) / (2 * eps)
  np.testing.assert_allclose(float(np.sum(g * v)), fd, rtol=3e-2, atol=1e-4)


def test_ffl_without_focus_is_mse_by_parseval():
  a, b = _pair(("noise", "noise"), (2, 16, 16, 3))
  ffl0 = lambda x: losses.frequency.ffl(x, jnp.asarray(b), alpha=0.0).sum()
  mse = lambda x: losses.mse(x, jnp.asarray(b)).sum()
  np.testing.assert_allclose(ffl0(a), mse(a), rtol=1e-5)
  np.testing.assert_allclose(jax.grad(ffl0)(jnp.asarray(a)), jax.grad(mse)(jnp.asarray(a)), atol=1e-7)


def test_l_inf_gradient_is_one_hot_at_the_largest_error():
  a, b = _pair(("noise", "noise"), (1, 8, 8, 3))
  g = np.asarray(jax.grad(lambda x: losses.l_inf_norm(x, jnp.asarray(b))[0])(jnp.asarray(a)))
  d = a - b
  k = np.unravel_index(np.argmax(np.abs(d)), d.shape)
  assert np.count_nonzero(g) == 1 and g[k] == np.sign(d[k])


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_vmap_over_a_leading_axis_equals_per_slice_calls(name):
  a, b = _pair(("noise", "noise"), (2, 32, 32, 3), seed=11)
  a2, b2 = np.stack([a, b]), np.stack([b, a])  # (2, B, H, W, C)
  fn = losses.LOSSES[name]
  out = jit_quick(jax.vmap(fn))(a2, b2)
  one = jit_quick(fn)  # compiled once for both slices (eagerly, MS-SSIM's scales took 20 s of ops)
  np.testing.assert_allclose(out, np.stack([one(a, b), one(b, a)]), rtol=1e-4, atol=1e-6)


def test_bf16_inputs_are_computed_in_float32():
  x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.bfloat16)
  for name, fn in losses.LOSSES.items():
    out = jax.eval_shape(fn, x, x)  # the traced dtype, without running every loss eagerly
    assert out.dtype == jnp.float32, name


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_mask_of_ones_equals_unmasked_and_outside_pixels_ignored(name):
  a, b = _pair(("noise", "noise"), (2, 32, 32, 3), seed=5)
  ones = np.ones((2, 32, 32, 1), np.float32)
  mask = np.zeros((2, 32, 32, 1), np.float32)
  mask[:, 6:26, 6:26] = 1
  b2 = b.copy()
  b2[:, :3] = 0.0  # change only pixels outside the mask
  a2 = a.copy()
  a2[:, :, -2:] = 1.0
  fn = jit_quick(losses.LOSSES[name])  # two compiles (with and without a mask), not op by op
  np.testing.assert_allclose(fn(a, b, ones), fn(a, b), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(fn(a2, b2, mask), fn(a, b, mask), rtol=1e-5, atol=1e-7)
  assert not np.allclose(fn(a2, b2), fn(a, b))  # ...which the unmasked loss does see


def test_mask_weights_count_eyes_and_mouth_extra():
  m = np.zeros((1, 4, 4, 3), np.float32)
  m[..., 0] = 1
  m[0, 0, 0, 1] = 1
  m[0, 1, 1, 2] = 1
  w = np.asarray(losses.mask_weights(m, 3.0, 2.0))[0, ..., 0]
  assert w[0, 0] == 3 and w[1, 1] == 2 and w[2, 2] == 1
  m[..., 0] = 0
  assert float(np.max(losses.mask_weights(m, 3.0, 2.0))) == 0  # nothing outside the face


def test_spec_parsing_and_combination():
  terms = losses.parse_loss_spec("ssim:1.0, mae:0.5,robust(alpha=0, scale=0.05):2,ms_ssim(scales=3)")
  assert terms[0] == losses.LossTerm("ssim", 1.0)
  assert terms[1] == losses.LossTerm("mae", 0.5)
  assert terms[2] == losses.LossTerm("robust", 2.0, (("alpha", 0.0), ("scale", 0.05)))
  assert terms[3].params == (("scales", 3),) and isinstance(terms[3].params[0][1], int)
  assert losses.parse_loss_spec("mse") == (losses.LossTerm("mse", 1.0),)
  a, b = _pair(("noise", "noise"), (2, 32, 32, 3))
  total, parts = losses.combined_loss(terms, a, b)
  robust = parts["robust(alpha=0.0,scale=0.05)"]  # a term with parameters is keyed with them
  np.testing.assert_allclose(total, parts["ssim"] + 0.5 * parts["mae"] + 2 * robust
                             + parts["ms_ssim(scales=3)"], rtol=1e-6)
  np.testing.assert_allclose(robust, losses.robust(a, b, alpha=0.0, scale=0.05), rtol=1e-6)


@pytest.mark.parametrize("spec,match", [
    ("nope:1", r"unknown loss 'nope'.*'mae'.*'ssim'"),
    ("mae:-1", r"'mae'.*weights must be finite and > 0"),
    ("mae:x", r"weight of loss 'mae'.*'x' is not a number"),
    ("mae:1,mae:2", "appears twice"),
    ("", "non-empty"),
    ("robust(alpha=1,scal=2)", r"bad parameter 'scal=2'; valid parameters: \['alpha', 'scale'\]"),
    ("mae(x=1)", r"valid parameters: none"),
    ("smooth_l1(delta=0)", r"'smooth_l1'.*out of range"),
    ("robust(alpha=1", r"unbalanced '\('"),
    ("latent_match:1", r"no image loss.*'mae,latent_match:1'"),
    ("swap_tone", r"no image loss.*'mae,swap_tone'"),
    ("mae,latent_match(spread=-1)", r"'latent_match'.*out of range"),
])
def test_bad_specs_name_the_term(spec, match):
  with pytest.raises(losses.LossSpecError, match=match):
    losses.parse_loss_spec(spec)


def test_bad_images_are_refused():
  a = _rand((2, 8, 8, 3), 0)
  with pytest.raises(ValueError, match=r"pred \(2, 8, 8, 3\), target \(2, 8, 8, 1\)"):
    losses.combined_loss(losses.parse_loss_spec("mae"), a, a[..., :1])
  with pytest.raises(ValueError, match=r"target has values in \[.*2.*\]; images must be in \[0, 1\]"):
    losses.combined_loss(losses.parse_loss_spec("mae"), a, a * 3)


def ref_latent_match(z, spread=1.0):
  """Written out per unit and identity with numpy: between-identity variance of the means and
  the standard deviations over the unit's variance, averaged with weights min(1, var / median var)."""
  z = np.asarray(z, np.float64).reshape(z.shape[0], z.shape[1], -1)
  var = np.array([z[:, :, u].var() for u in range(z.shape[2])])
  num = den = 0.0
  for u in range(z.shape[2]):
    col = z[:, :, u]
    mus, sds = col.mean(1), col.std(1)
    ratio = (((mus - mus.mean()) ** 2).mean() + spread * ((sds - sds.mean()) ** 2).mean()) / var[u]
    w = min(1.0, var[u] / np.median(var))
    num, den = num + w * ratio, den + w
  return num / den


@pytest.mark.parametrize("spread", [0.0, 1.0, 2.5])
def test_latent_match_against_numpy_reference(spread):
  rng = np.random.default_rng(3)
  z = rng.normal(size=(3, 8, 2, 2, 5)) * rng.uniform(0.1, 3, size=(1, 1, 2, 2, 5))
  z[1] += rng.normal(size=(2, 2, 5))  # identity 1's codes are shifted
  z[2] *= 2.0                          # identity 2's spread
  got = float(losses.LATENT_LOSSES["latent_match"](jnp.asarray(z, jnp.float32), spread=spread))
  np.testing.assert_allclose(got, ref_latent_match(z, spread), rtol=1e-4)


def test_latent_match_reads_identity_in_the_code_not_its_scale():
  rng = np.random.default_rng(0)
  shared = rng.normal(size=(2, 64, 16)).astype(np.float32)  # both identities: the same distribution
  told = shared.copy()
  told[1, :, :4] += 2.0                                      # 4 of 16 units tell the identity
  fn = losses.LATENT_LOSSES["latent_match"]
  base, leak = float(fn(shared)), float(fn(told))
  assert base < 0.05 and leak > 4 * base     # sampling noise only, against a code that leaks
  np.testing.assert_allclose(float(fn(told * 100.0)), leak, rtol=1e-4)  # shrinking cannot hide it
  grad = np.asarray(jax.grad(lambda z: fn(z))(jnp.asarray(told)))
  per_unit = np.abs(grad).sum((0, 1))
  assert per_unit[:4].mean() > 2 * per_unit[4:].mean()      # it pulls hardest on the leaking units
  dead = told.copy()
  dead[:, :, 4:8] = 0.0                                      # killing units that tell nothing
  assert float(fn(dead)) >= leak                             # is not rewarded,
  loud = told.copy()
  loud[:, :, 15] *= 1000.0                                   # nor is one unit of huge variance
  assert float(fn(loud)) >= 0.9 * leak
  gap = lambda z: np.abs(z[1, :, :4].mean(0) - z[0, :, :4].mean(0)).mean()
  assert gap(told - 0.5 * grad / np.abs(grad).max()) < 0.9 * gap(told)  # descending it closes the gap


def test_latent_terms_join_a_spec_and_the_loss():
  from encdec_jax.losses import compose

  class Fake:  # reconstruct -> (images (N, B, H, W, 3), codes (N, B, F)): the codes are the inputs' means
    def apply(self, params, x, method=None):
      assert method == "reconstruct"
      return x * params, x.mean((2, 3, 4))[..., None] * jnp.arange(1.0, 4.0)

  terms = losses.parse_loss_spec("mae,latent_match:0.5")
  assert [losses.is_latent(t.name) for t in terms] == [False, True]
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(size=(2, 4, 8, 8, 3)), jnp.float32)
  batch = {"inputs": x, "targets": x}
  settings = compose.loss_settings(terms, config_lib.MaskConfig(enabled=False))
  loss, metrics = compose.make_loss_fn(Fake(), terms)(0.5, batch, settings)
  codes = x.mean((2, 3, 4))[..., None] * jnp.arange(1.0, 4.0)
  lm = float(losses.LATENT_LOSSES["latent_match"](codes))
  mae = float(jnp.abs(x * 0.5 - x).mean((1, 2, 3, 4)).sum())
  np.testing.assert_allclose(float(loss), mae + 0.5 * lm, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["train/latent_match"]), lm, rtol=1e-5)


def test_identity_adversary_trains_the_critic_to_tell_and_the_encoder_to_hide():
  """The critic's weights learn only its cross-entropy on the codes; the encoder learns only to
  make the (frozen) critic's answer uniform; the value is both, written out with numpy."""
  from encdec_jax.losses import compose

  class Fake:  # codes = the inputs' means x params["enc"]; the critic: codes @ params["critic"]
    def apply(self, params, x, method=None):
      if method == "reconstruct":
        return x * params["scale"], x.mean((2, 3, 4))[..., None] * params["enc"]
      assert method == "critic_logits"
      return x @ params["critic"]

  terms = losses.parse_loss_spec("mae,identity_adversary:0.7")
  assert [losses.is_adversary(t.name) for t in terms] == [False, True]
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.uniform(size=(2, 4, 8, 8, 3)), jnp.float32)
  params = {"scale": jnp.float32(0.5), "enc": jnp.asarray(rng.normal(size=3), jnp.float32),
            "critic": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
  settings = compose.loss_settings(terms, config_lib.MaskConfig(enabled=False))
  loss_fn = compose.make_loss_fn(Fake(), terms)
  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, {"inputs": x, "targets": x}, settings)

  labels = np.repeat(np.arange(2), 4)
  codes = lambda enc: x.mean((2, 3, 4)).reshape(8, 1) * enc  # noqa: E731
  ce = lambda logits: -jax.nn.log_softmax(logits)[np.arange(8), labels].mean()  # noqa: E731
  kl = lambda logits: -jax.nn.log_softmax(logits).mean() - np.log(2)  # noqa: E731
  logits = np.asarray(codes(params["enc"]) @ params["critic"], np.float64)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  want = -logp[np.arange(8), labels].mean() + (-logp.mean() - np.log(2))  # numpy, by hand
  np.testing.assert_allclose(float(metrics["train/identity_adversary"]), want, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["train/critic_acc"]), (logits.argmax(1) == labels).mean())
  mae = float(jnp.abs(x * 0.5 - x).mean((1, 2, 3, 4)).sum())
  np.testing.assert_allclose(float(loss), mae + 0.7 * want, rtol=1e-5)
  critic_grad = jax.grad(lambda w: 0.7 * ce(codes(params["enc"]) @ w))(params["critic"])
  np.testing.assert_allclose(grads["critic"], critic_grad, rtol=1e-5, atol=1e-7)
  enc_grad = jax.grad(lambda e: 0.7 * kl(codes(e) @ params["critic"]))(params["enc"])
  np.testing.assert_allclose(grads["enc"], enc_grad, rtol=1e-5, atol=1e-7)
  assert np.abs(np.asarray(enc_grad)).max() > 1e-3  # the encoder is pulled, not left alone


def test_readme_loss_table_names_every_loss_and_its_parameters():
  """The README's loss table: a row for every registered loss (ALL_LOSSES), each naming the
  loss's own parameters; a loss added without its row, or a row left for a removed one, fails."""
  import os
  import re
  text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
  table = text.split("## Losses\n", 1)[1].split("\n\n| name |", 1)[1].split("\n\n", 1)[0]
  rows = {}
  for line in table.splitlines()[2:]:
    cells = line.split("|")
    for name in re.findall(r"`([a-z0-9_]+)`", cells[1]):
      rows[name] = cells[2]
  assert set(rows) == set(losses.ALL_LOSSES), (set(rows) ^ set(losses.ALL_LOSSES))
  for name in losses.ALL_LOSSES:
    for param in losses.loss_params(name):
      assert f"`{param}`" in rows[name], (name, param)
