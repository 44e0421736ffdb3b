"""The swap-path terms (encdec_jax/losses/swap.py) against numpy references, and their wiring in
encdec_jax/losses/compose.py: which pairs are decoded, which gradient reaches the encoder."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import config as config_lib, losses
from encdec_jax.losses.swap import SwapPair


def _decoded(method, codes, j, gain):
  """compose's decode `method` on a fake module: no code step, decoder j = code x (j + 1) / 4 x gain."""
  module = type("M", (), {"code": lambda self, c, j: c,
                          "decode": lambda self, c, j: c * (j + 1) / 4 * gain})()
  return method(module, codes, j)


def test_swap_tone_against_numpy_reference():
  """The mask-weighted mean colour of the swaps against the target's colour, L1 over channels."""
  rng = np.random.default_rng(5)
  swaps = rng.uniform(size=(3, 6, 6, 4)).astype(np.float32)  # a 4th channel (learned mask) is ignored
  mask = rng.uniform(size=(3, 6, 6, 1)).astype(np.float32)
  target = np.array([0.4, 0.3, 0.2], np.float32)
  want = np.mean([abs((swaps[..., c] * mask[..., 0]).sum() / mask.sum() - target[c]) for c in range(3)])
  got = float(losses.SWAP_LOSSES["swap_tone"](SwapPair(jnp.asarray(swaps), jnp.asarray(mask), jnp.asarray(target))))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Pixels outside the mask do not count; a swap of exactly the target's mean colour scores 0.
  inside = np.broadcast_to(target, (3, 6, 6, 3)).copy()
  binary = (mask > 0.5).astype(np.float32)
  inside[binary[..., 0] == 0] = 1.0
  assert float(losses.SWAP_LOSSES["swap_tone"](SwapPair(inside, binary, target))) < 1e-6
  # common=1: the swaps' colour inside mask x region, against the region's target colour.
  region = (rng.uniform(size=(6, 6, 1)) > 0.4).astype(np.float32)
  target_region = np.array([0.1, 0.5, 0.9], np.float32)
  mr = mask[..., 0] * region[..., 0]
  want = np.mean([abs((swaps[..., c] * mr).sum() / mr.sum() - target_region[c]) for c in range(3)])
  pair = SwapPair(jnp.asarray(swaps), jnp.asarray(mask), jnp.asarray(target), region=jnp.asarray(region),
                  target_colour_region=jnp.asarray(target_region))
  np.testing.assert_allclose(float(losses.SWAP_LOSSES["swap_tone"](pair, common=1)), want, rtol=1e-5)
  # skin=1: the swaps' colour over face x (1 - eyes) x (1 - mouth), against the target's skin colour.
  features = rng.uniform(size=(3, 6, 6, 2)).astype(np.float32)
  target_skin = np.array([0.7, 0.2, 0.6], np.float32)
  ms = mask[..., 0] * (1 - features[..., 0]) * (1 - features[..., 1])
  want = np.mean([abs((swaps[..., c] * ms).sum() / ms.sum() - target_skin[c]) for c in range(3)])
  pair = SwapPair(jnp.asarray(swaps), jnp.asarray(mask), jnp.asarray(target), feature_masks=jnp.asarray(features),
                  target_colour_skin=jnp.asarray(target_skin))
  np.testing.assert_allclose(float(losses.SWAP_LOSSES["swap_tone"](pair, skin=1)), want, rtol=1e-5)
  # A mouth drawn darker (an open one) moves the plain term, not the skin's.
  mouth = rng.uniform(size=(3, 6, 6, 1)) > 0.7
  darker = np.where(mouth, swaps * 0.2, swaps)
  features_m = np.concatenate([np.zeros_like(mouth, np.float32), mouth.astype(np.float32)], -1)
  tone = lambda x, **kw: float(losses.SWAP_LOSSES["swap_tone"](SwapPair(  # noqa: E731
      jnp.asarray(x), jnp.asarray(mask), jnp.asarray(target), feature_masks=jnp.asarray(features_m),
      target_colour_skin=jnp.asarray(target_skin)), **kw))
  assert abs(tone(darker, skin=1) - tone(swaps, skin=1)) < 1e-6 and abs(tone(darker) - tone(swaps)) > 0.01
  for bad in ("swap_tone(common=2)", "swap_tone(skin=2)", "swap_tone(common=1,skin=1)"):
    with pytest.raises(losses.LossSpecError, match="out of range"):
      losses.parse_loss_spec(f"mae,{bad}")


def test_swap_cycle_against_numpy_reference():
  """Mean squared gap of the swaps' codes to the moved codes, over the codes' mean variance; 0
  when the swap's code is exactly i's code moved to j's mean."""
  rng = np.random.default_rng(6)
  recoded = rng.normal(size=(3, 2, 2, 5)).astype(np.float32)
  target = rng.normal(size=(3, 2, 2, 5)).astype(np.float32)
  want = ((recoded - target) ** 2).mean() / 0.7
  pair = SwapPair(None, None, None, recoded=jnp.asarray(recoded), code_target=jnp.asarray(target),
                  code_var=jnp.float32(0.7))
  np.testing.assert_allclose(float(losses.SWAP_LOSSES["swap_cycle"](pair)), want, rtol=1e-5)
  assert float(losses.SWAP_LOSSES["swap_cycle"](pair._replace(recoded=jnp.asarray(target)))) == 0.0


def test_swap_structure_against_numpy_reference():
  """1 - the mask-weighted correlation of the luminances per feature region, averaged; 0 for a
  swap that is the source in another tone and contrast (gain and offset, per channel alike);
  higher for one that darkens where the source is light."""
  rng = np.random.default_rng(7)
  swaps = rng.uniform(size=(2, 6, 6, 4)).astype(np.float32)  # a 4th channel (learned mask) is ignored
  src = rng.uniform(size=(2, 6, 6, 3)).astype(np.float32)
  w = rng.uniform(size=(2, 6, 6, 2)).astype(np.float32)
  luma = np.array([0.299, 0.587, 0.114], np.float32)
  ys, yx = swaps[..., :3] @ luma, src @ luma

  def corr(a, b, m):
    ma, mb = (m * a).sum() / m.sum(), (m * b).sum() / m.sum()
    cov = (m * (a - ma) * (b - mb)).sum() / m.sum()
    return cov / np.sqrt((m * (a - ma) ** 2).sum() / m.sum() * (m * (b - mb) ** 2).sum() / m.sum())
  both = 1 - np.mean([corr(ys[b], yx[b], w[b, ..., r]) for b in range(2) for r in range(2)])
  mouth = 1 - np.mean([corr(ys[b], yx[b], w[b, ..., 1]) for b in range(2)])
  pair = SwapPair(jnp.asarray(swaps), None, None, sources=jnp.asarray(src), feature_masks=jnp.asarray(w))
  f = losses.SWAP_LOSSES["swap_structure"]
  np.testing.assert_allclose(float(f(pair)), mouth, rtol=1e-4)  # the mouth region (channel 1) only
  np.testing.assert_allclose(float(f(pair, eyes=1)), both, rtol=1e-4)
  assert abs(mouth - both) > 0.01
  same = pair._replace(swaps=jnp.asarray(0.2 + 0.5 * src))
  assert abs(float(f(same))) < 1e-4
  assert float(f(pair._replace(swaps=jnp.asarray(1.0 - src)))) > 1.9  # anti-correlated: 2
  with pytest.raises(ValueError, match="eye and mouth masks"):
    f(pair._replace(feature_masks=jnp.zeros((2, 6, 6, 0))))
  with pytest.raises(losses.LossSpecError, match="out of range"):
    losses.parse_loss_spec("mae,swap_structure(eyes=2)")


def test_swap_structure_chroma_weighs_in_red_minus_green():
  """chroma=c: (1 - c) x the luminance's term + c x red minus green's, against numpy; a swap
  that keeps the source's redness in another brightness scores 0 at chroma=1 and not at 0."""
  rng = np.random.default_rng(9)
  src = rng.uniform(0.2, 0.8, size=(2, 6, 6, 3)).astype(np.float32)
  swaps = rng.uniform(size=(2, 6, 6, 3)).astype(np.float32)
  w = rng.uniform(size=(2, 6, 6, 2)).astype(np.float32)

  def corr(a, b, m):
    ma, mb = (m * a).sum() / m.sum(), (m * b).sum() / m.sum()
    cov = (m * (a - ma) * (b - mb)).sum() / m.sum()
    return cov / np.sqrt((m * (a - ma) ** 2).sum() / m.sum() * (m * (b - mb) ** 2).sum() / m.sum())

  def term(a, b, c):
    return 1 - np.mean([corr(a[k] @ c, b[k] @ c, w[k, ..., 1]) for k in range(2)])
  luma, rg = np.array([0.299, 0.587, 0.114]), np.array([1.0, -1.0, 0.0])
  f = losses.SWAP_LOSSES["swap_structure"]
  pair = SwapPair(jnp.asarray(swaps), None, None, sources=jnp.asarray(src), feature_masks=jnp.asarray(w))
  for c in (0.0, 0.3, 1.0):
    want = (1 - c) * term(swaps, src, luma) + c * term(swaps, src, rg)
    np.testing.assert_allclose(float(f(pair, chroma=c)), want, rtol=1e-4)
  # Red minus green kept, the brightness pattern reversed: green and blue carry the difference.
  redness = src[..., 0] - src[..., 1]
  g = 1.0 - src[..., 1]
  kept = np.stack([g + redness, g, np.full_like(g, 0.5)], -1).astype(np.float32)
  kept_pair = pair._replace(swaps=jnp.asarray(kept))
  assert abs(float(f(kept_pair, chroma=1.0))) < 1e-4
  assert float(f(kept_pair, chroma=0.0)) > 0.5
  assert losses.parse_loss_spec("mae,swap_structure(chroma=0.5)")[1].params == (("chroma", 0.5),)
  with pytest.raises(losses.LossSpecError, match="out of range"):
    losses.parse_loss_spec("mae,swap_structure(chroma=1.5)")


def test_swap_mean_against_numpy_reference():
  """(mean of half A of the swaps - j's mean image) x (the same for half B), weighted by `both`,
  over channels and pixels, relative to j's targets' variance; a 4th channel is ignored."""
  rng = np.random.default_rng(8)
  swaps = rng.uniform(size=(5, 6, 6, 4)).astype(np.float32)
  mean = rng.uniform(size=(6, 6, 3)).astype(np.float32)
  both = rng.uniform(size=(6, 6, 1)).astype(np.float32)
  d = swaps[..., :3] - mean
  want = (both * d[:2].mean(0) * d[2:].mean(0)).sum() / 3 / both.sum() / 0.04
  pair = SwapPair(jnp.asarray(swaps), None, None, target_mean=jnp.asarray(mean),
                  target_var=jnp.float32(0.04), both=jnp.asarray(both))
  f = losses.SWAP_LOSSES["swap_mean"]
  np.testing.assert_allclose(float(f(pair)), want, rtol=1e-5)
  # A constant offset of one standard deviation everywhere scores 1; one swap, its square.
  shifted = pair._replace(swaps=jnp.broadcast_to(jnp.asarray(mean) + 0.2, (4, 6, 6, 3)))
  np.testing.assert_allclose(float(f(shifted)), 1.0, rtol=1e-4)
  np.testing.assert_allclose(float(f(shifted._replace(swaps=shifted.swaps[:1]))), 1.0, rtol=1e-4)
  # paired=1: each swap minus its source, against j's mean minus i's mean (of its other images).
  src = rng.uniform(size=(5, 6, 6, 3)).astype(np.float32)
  src_mean = rng.uniform(size=(6, 6, 3)).astype(np.float32)
  dp = d - src + src_mean
  want = (both * dp[:2].mean(0) * dp[2:].mean(0)).sum() / 3 / both.sum() / 0.04
  paired = pair._replace(sources=jnp.asarray(src), source_mean=jnp.asarray(src_mean))
  np.testing.assert_allclose(float(f(paired, paired=1)), want, rtol=1e-5)
  # A swap that is its source moved by j's mean face minus i's scores 0 paired, whatever the
  # sources' spread, where the unpaired form reads that spread.
  follows = paired._replace(swaps=jnp.asarray(src - src_mean + mean))
  assert abs(float(f(follows, paired=1))) < 1e-5 and abs(float(f(follows))) > 0.1
  with pytest.raises(losses.LossSpecError, match="out of range"):
    losses.parse_loss_spec("mae,swap_mean(paired=2)")


def test_swap_mean_estimates_the_gap_of_the_means_whatever_the_swaps_spread():
  """Over many batches the term averages to the squared gap between the swaps' expected image and
  j's mean (0.1 here, relative 0.25), however widely the swaps spread around it (std 0.3): the
  square of one batch's mean would add the spread over the batch (0.09 / 2 here) and pull every
  swap toward one average face."""
  rng = np.random.default_rng(9)
  mean = jnp.full((4, 4, 3), 0.5, jnp.float32)
  f = jax.jit(lambda s: losses.SWAP_LOSSES["swap_mean"](SwapPair(
      s, None, None, target_mean=mean, target_var=jnp.float32(0.04), both=jnp.ones((4, 4, 1)))))
  draws = 0.6 + 0.3 * rng.normal(size=(4000, 2, 4, 4, 3)).astype(np.float32)
  got = np.mean([float(f(jnp.asarray(s))) for s in draws[:1500]])
  naive = np.mean((draws.mean(1) - 0.5) ** 2) / 0.04  # what the square of the batch mean reads
  np.testing.assert_allclose(got, 0.25, atol=0.05)
  assert naive > 1.0


def test_swap_terms_decode_each_identity_with_the_others_decoder():
  """make_loss_fn adds, for every ordered pair (i, j != i), the term on decoder j's output for the
  first swap_rows(B) codes of identity i, inside i's face masks, against j's own mean colour."""
  from encdec_jax.losses import compose
  from encdec_jax.losses.swap import mean_colour

  class Fake:  # encoder: identity; decoder j: the image times (j + 1) / 4; no code step
    def apply(self, params, x, *args, method=None):
      if method == "reconstruct":
        return jnp.stack([x[i] * (i + 1) / 4 * params for i in range(x.shape[0])]), x
      if method == "encode":
        return x
      return _decoded(method, x, args[0], params)

  terms = losses.parse_loss_spec("mae,swap_tone:2,swap_cycle:0.5")
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.uniform(size=(2, 8, 8, 8, 3)), jnp.float32)
  masks = jnp.asarray(rng.uniform(size=(2, 8, 8, 8, 3)) > 0.3, jnp.float32)
  batch = {"inputs": x, "targets": x, "masks": masks}
  settings = compose.loss_settings(terms, config_lib.MaskConfig(enabled=False))
  loss, metrics = compose.make_loss_fn(Fake(), terms)(1.0, batch, settings)
  k = compose.swap_rows(8)
  assert k == 2
  tone = cycle = 0.0
  xn = np.asarray(x)
  var = xn.reshape(16, -1).var(axis=0).mean()  # the codes are the inputs (encoder: identity)
  for i, j in ((0, 1), (1, 0)):
    own = mean_colour(x[j], masks[j, ..., :1])
    tone += float(jnp.abs(mean_colour(x[i, :k] * (j + 1) / 4, masks[i, :k, ..., :1]) - own).mean())
    moved = xn[i, :k] - xn[i].mean(0) + xn[j].mean(0)
    cycle += ((xn[i, :k] * (j + 1) / 4 - moved) ** 2).mean() / var
  mae = sum(float(jnp.abs(x[i] * (i + 1) / 4 - x[i]).mean()) for i in range(2))
  np.testing.assert_allclose(float(metrics["train/swap_tone"]), tone, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["train/swap_cycle"]), cycle, rtol=1e-5)
  np.testing.assert_allclose(float(loss), mae + 2 * tone + 0.5 * cycle, rtol=1e-5)
  # swap_tone(common=1): both colours inside the pixels where both identities' mean masks > 0.5.
  terms = losses.parse_loss_spec("mae,swap_tone(common=1):2")
  _, metrics = compose.make_loss_fn(Fake(), terms)(1.0, batch, settings)
  mn = np.asarray(masks[..., :1])
  region = ((mn[0].mean(0) > 0.5) & (mn[1].mean(0) > 0.5)).astype(np.float32)
  assert 0 < region.sum() < region.size  # the region is neither empty nor everything
  tone = 0.0
  for i, j in ((0, 1), (1, 0)):
    own = mean_colour(x[j], mn[j] * region)
    tone += float(jnp.abs(mean_colour(x[i, :k] * (j + 1) / 4, mn[i, :k] * region) - own).mean())
  np.testing.assert_allclose(float(metrics["train/swap_tone(common=1)"]), tone, rtol=1e-5)
  # swap_tone(skin=1): both colours over face x (1 - eyes) x (1 - mouth), each image's own masks.
  terms = losses.parse_loss_spec("mae,swap_tone(skin=1):2")
  _, metrics = compose.make_loss_fn(Fake(), terms)(1.0, batch, settings)
  skin = np.asarray(masks[..., :1] * (1 - masks[..., 1:2]) * (1 - masks[..., 2:3]))
  assert 0 < skin.sum() < np.asarray(masks[..., :1]).sum()  # the features take some face away
  tone = 0.0
  for i, j in ((0, 1), (1, 0)):
    own = mean_colour(x[j], skin[j])
    tone += float(jnp.abs(mean_colour(x[i, :k] * (j + 1) / 4, skin[i, :k]) - own).mean())
  np.testing.assert_allclose(float(metrics["train/swap_tone(skin=1)"]), tone, rtol=1e-5)


def test_swap_structure_compares_each_swap_with_its_source_target_inside_the_feature_masks():
  """make_loss_fn's swap_structure: decoder j's swaps of i's first swap_rows(B) codes against i's
  training targets (not the warped inputs the codes were read from), inside i's eye and mouth
  masks (mask channels 1 and 2), summed over ordered pairs; swap_mean against j's targets' mean."""
  from encdec_jax.losses import compose

  class Fake:  # encoder: identity; decoder j: the image times (j + 1) / 4; no code step
    def apply(self, params, x, *args, method=None):
      if method == "reconstruct":
        return jnp.stack([x[i] * (i + 1) / 4 * params for i in range(x.shape[0])]), x
      return _decoded(method, x, args[0], params)

  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.uniform(size=(2, 8, 8, 8, 3)), jnp.float32)
  targets = jnp.clip(x + 0.3 * jnp.asarray(rng.normal(size=x.shape), jnp.float32), 0, 1)
  masks = jnp.asarray(rng.uniform(size=(2, 8, 8, 8, 3)), jnp.float32)
  terms = losses.parse_loss_spec("mae,swap_structure:0.5")
  settings = compose.loss_settings(terms, config_lib.MaskConfig(enabled=False))
  batch = {"inputs": x, "targets": targets, "masks": masks}
  loss, metrics = compose.make_loss_fn(Fake(), terms)(1.0, batch, settings)
  k = compose.swap_rows(8)
  f = losses.SWAP_LOSSES["swap_structure"]
  want = sum(float(f(SwapPair(x[i, :k] * (j + 1) / 4, None, None, sources=targets[i, :k],
                              feature_masks=masks[i, :k, ..., 1:3]))) for i, j in ((0, 1), (1, 0)))
  assert want > 0.05  # the targets differ from the inputs: a wiring to the inputs would read ~0
  np.testing.assert_allclose(float(metrics["train/swap_structure"]), want, rtol=1e-5)
  mae = sum(float(jnp.abs(x[i] * (i + 1) / 4 - targets[i]).mean()) for i in range(2))
  np.testing.assert_allclose(float(loss), mae + 0.5 * want, rtol=1e-5)
  # swap_mean: the same swaps against j's targets' mean image (not its inputs'), over the product of
  # both identities' batch-mean face masks (mask channel 0), relative to j's targets' variance there.
  terms = losses.parse_loss_spec("mae,swap_mean:2")
  _, metrics = compose.make_loss_fn(Fake(), terms)(1.0, batch, settings)
  want = of_inputs = 0.0
  for i, j in ((0, 1), (1, 0)):
    both = masks[i, ..., :1].mean(0) * masks[j, ..., :1].mean(0)
    for images in (targets, x):
      var = (both * images[j].var(0)).mean(-1, keepdims=True).sum() / both.sum()
      v = float(losses.SWAP_LOSSES["swap_mean"](SwapPair(
          x[i, :k] * (j + 1) / 4, None, None, target_mean=images[j].mean(0), target_var=var, both=both)))
      want, of_inputs = (want + v, of_inputs) if images is targets else (want, of_inputs + v)
  assert abs(want - of_inputs) > 0.05  # a wiring to j's inputs would read another value
  np.testing.assert_allclose(float(metrics["train/swap_mean"]), want, rtol=1e-5)
  # paired=1: each swap minus its source target, against j's mean minus the mean of i's targets
  # that were not swapped (rows k on: independent of the swaps).
  terms = losses.parse_loss_spec("mae,swap_mean(paired=1)")
  _, metrics = compose.make_loss_fn(Fake(), terms)(1.0, batch, settings)
  want = 0.0
  for i, j in ((0, 1), (1, 0)):
    both = masks[i, ..., :1].mean(0) * masks[j, ..., :1].mean(0)
    var = (both * targets[j].var(0)).mean(-1, keepdims=True).sum() / both.sum()
    want += float(losses.SWAP_LOSSES["swap_mean"](SwapPair(
        x[i, :k] * (j + 1) / 4, None, None, target_mean=targets[j].mean(0), target_var=var, both=both,
        sources=targets[i, :k], source_mean=targets[i, k:].mean(0)), paired=1))
  np.testing.assert_allclose(float(metrics["train/swap_mean(paired=1)"]), want, rtol=1e-5)


def test_swap_terms_need_masks():
  from encdec_jax.losses import compose
  cfg = config_lib.from_config_dict(config_lib.override(
      config_lib.default_config_dict(), {"loss": "mae,swap_tone", "mask.enabled": False}))
  assert compose.needs_masks(cfg)
  cfg = config_lib.from_config_dict(config_lib.override(
      config_lib.default_config_dict(), {"loss": "mae", "mask.enabled": False}))
  assert not compose.needs_masks(cfg)


def test_swap_cycle_freezes_the_encoder_in_its_second_pass():
  """The gradient reaches the encoder through i's codes (the first pass) and decoder j, not
  through the encoder's reading of the swap: else the encoder could meet the term by reading
  less. Fake model: code = a * image, decoder j = code * (j + 1) / 4 * d."""
  from encdec_jax.losses import compose

  class Fake:
    def apply(self, p, x, *args, method=None):
      if method == "reconstruct":
        return x * p["d"], x * p["a"]
      if method == "encode":
        return x * p["a"]
      return _decoded(method, x, args[0], p["d"])

  terms = losses.parse_loss_spec("mae:1,swap_cycle(encoder=1):1")
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.uniform(size=(2, 8, 4, 4, 3)), jnp.float32)
  batch = {"inputs": x, "targets": x, "masks": jnp.ones_like(x)}
  s = dict(compose.loss_settings(terms, config_lib.MaskConfig(enabled=False)), term_weights=(0.0, 1.0))
  fn = compose.make_loss_fn(Fake(), terms)
  p0 = {"a": jnp.float32(1.3), "d": jnp.float32(0.9)}
  got = jax.grad(lambda p: fn(p, batch, s)[0])(p0)

  def cycle(a, d, a2):  # a: the first pass (codes); a2: the encoder reading the swaps, held
    xn, k = np.asarray(x, np.float64), compose.swap_rows(8)
    z = xn * a
    zs = z * 1.3 / a  # the statistics and target carry no gradient: at a = 1.3
    var = zs.reshape(16, -1).var(axis=0).mean()
    out = 0.0
    for i, j in ((0, 1), (1, 0)):
      rec = z[i, :k] * (j + 1) / 4 * d * a2
      out += ((rec - (zs[i, :k] - zs[i].mean(0) + zs[j].mean(0))) ** 2).mean() / var
    return out

  e = 1e-4
  want_a = (cycle(1.3 + e, 0.9, 1.3) - cycle(1.3 - e, 0.9, 1.3)) / (2 * e)
  want_d = (cycle(1.3, 0.9 + e, 1.3) - cycle(1.3, 0.9 - e, 1.3)) / (2 * e)
  np.testing.assert_allclose([float(got["a"]), float(got["d"])], [want_a, want_d], rtol=2e-3)
  # encoder=0: the codes are decoded without gradient, so only decoder j learns from the term.
  for spec in ("mae:1,swap_cycle(encoder=0):1", "mae:1,swap_tone(encoder=0):1"):
    t0 = losses.parse_loss_spec(spec)
    f0 = compose.make_loss_fn(Fake(), t0)
    g0 = jax.grad(lambda p: f0(p, batch, s)[0])(p0)
    assert float(g0["a"]) == 0.0 and float(g0["d"]) != 0.0, spec
  np.testing.assert_allclose(float(fn(p0, batch, s)[0]),
                             float(compose.make_loss_fn(Fake(), losses.parse_loss_spec(
                                 "mae:1,swap_cycle(encoder=0):1"))(p0, batch, s)[0]), rtol=1e-6)
  with pytest.raises(losses.LossSpecError, match="out of range"):
    losses.parse_loss_spec("mae,swap_tone(encoder=2)")
  # Two forms of one swap term in a group (members weight the union of their terms): each keeps
  # its own part, so a member that weights only the encoder=0 form gives the encoder no gradient.
  union = (losses.parse_loss_spec("mae:1,swap_tone(encoder=1):1")
           + losses.parse_loss_spec("mae,swap_tone(encoder=0)")[1:])
  fu = compose.make_loss_fn(Fake(), union)
  su = dict(compose.loss_settings(union, config_lib.MaskConfig(enabled=False)), term_weights=(0.0, 0.0, 1.0))
  gu, mu = jax.grad(lambda p: fu(p, batch, su), has_aux=True)(p0)
  assert float(gu["a"]) == 0.0 and {"train/swap_tone(encoder=1)", "train/swap_tone(encoder=0)"} <= set(mu)


def test_swap_realism_trains_the_critic_on_real_against_swaps_and_the_decoder_to_pass():
  """The realism critic's weights learn only its logistic loss (j's first swap_rows(B) targets
  real, the swaps of i's fake), row r of both read inside both identities' row-r face masks; decoder j learns only to make
  the frozen critic call its swaps real; the value and the critic's accuracy, written out with
  numpy. Fake model: encoder identity, decoder j = code x (j + 1) / 4 x d, critic on identity j
  = (image @ w) x (j + 1), one logit per pixel."""
  from encdec_jax.losses import compose

  class Fake:
    def apply(self, p, x, *args, method=None):
      if method == "reconstruct":
        return jnp.stack([x[i] * (i + 1) / 4 * p["d"] for i in range(x.shape[0])]), x
      if method == "realism_logits":
        return (x @ p["w"]) * (args[0] + 1)
      return _decoded(method, x, args[0], p["d"])

  terms = losses.parse_loss_spec("mae,swap_realism:0.5")
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.uniform(size=(2, 8, 4, 4, 3)), jnp.float32)
  masks = jnp.asarray(rng.uniform(size=(2, 8, 4, 4, 3)) > 0.3, jnp.float32)
  batch = {"inputs": x, "targets": x, "masks": masks}
  k = compose.swap_rows(8)
  mn = np.asarray(masks[..., :1], np.float64)
  region = mn[0, :k] * mn[1, :k]  # row r: inside both identities' row-r face masks
  assert 0 < region.sum() < region.size  # neither empty nor everything
  settings = compose.loss_settings(terms, config_lib.MaskConfig(enabled=False))
  p0 = {"d": jnp.float32(0.9), "w": jnp.asarray([0.8, -1.1, 0.4], jnp.float32)}
  fn = compose.make_loss_fn(Fake(), terms)
  (loss, metrics), grads = jax.value_and_grad(fn, has_aux=True)(p0, batch, settings)

  xn = np.asarray(x, np.float64)
  sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
  want, right = 0.0, []
  for i, j in ((0, 1), (1, 0)):
    real = (xn[j, :k] * region @ np.asarray(p0["w"], np.float64)) * (j + 1)
    fake = (xn[i, :k] * (j + 1) / 4 * 0.9 * region @ np.asarray(p0["w"], np.float64)) * (j + 1)
    want += sp(-real).mean() + sp(fake).mean() + sp(-fake).mean()
    right.append(0.5 * ((real > 0).mean() + (fake < 0).mean()))
  mae = sum(float(np.abs(xn[i] * (i + 1) / 4 * 0.9 - xn[i]).mean()) for i in range(2))
  np.testing.assert_allclose(float(metrics["train/swap_realism"]), want, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["train/realism_acc"]), np.mean(right), rtol=1e-6)
  np.testing.assert_allclose(float(loss), mae + 0.5 * want, rtol=1e-5)
  assert 0 < np.mean(right) < 1  # the accuracy is not trivially 0 or 1 on these weights

  def parts(w, d):  # (the critic's part, the generator's part), summed over the pairs
    critic = generator = 0.0
    for i, j in ((0, 1), (1, 0)):
      real, fake = (x[j, :k] * region @ w) * (j + 1), ((x[i, :k] * (j + 1) / 4 * d * region) @ w) * (j + 1)
      critic += jax.nn.softplus(-real).mean() + jax.nn.softplus(fake).mean()
      generator += jax.nn.softplus(-fake).mean()
    return critic, generator
  w_grad = jax.grad(lambda w: 0.5 * parts(w, p0["d"])[0])(p0["w"])
  np.testing.assert_allclose(grads["w"], w_grad, rtol=1e-5, atol=1e-7)
  mae_d = jax.grad(lambda d: sum(jnp.abs(x[i] * (i + 1) / 4 * d - x[i]).mean() for i in range(2)))(p0["d"])
  gen_d = jax.grad(lambda d: 0.5 * parts(p0["w"], d)[1])(p0["d"])
  np.testing.assert_allclose(float(grads["d"]), float(mae_d + gen_d), rtol=1e-5)
  assert abs(float(gen_d)) > 1e-3  # the decoder is pulled by the critic, not left alone
