"""Code matching (encdec_jax/codematch.py): its statistics and maps against numpy, the model's
decoders reading the mapped code, and its wiring into evaluation, calibration and swapping."""
import numpy as np
import pytest

from encdec_jax import assemble, codematch, config as config_lib, decode, evaluate, inference
from tests.helpers import init_params, jit_quick


def _codes(seed=0, n=3, b=200):
  """(trn with 'image' standing for codes, the codes): identity i's units at mean 0.1 i and spread
  (0.02, 0.05, 0.1)[i], one unit dead for identity 0."""
  rng = np.random.default_rng(seed)
  z = [0.1 * i + (0.02, 0.05, 0.1)[i] * rng.standard_normal((b, 2, 2, 3)) for i in range(n)]
  z[0][:, 0, 0, 0] = 0.3
  return {"image": np.concatenate(z).astype(np.float32), "identity": np.repeat(np.arange(n), b)}, z


def _identity_encode(params, x):
  return x


def test_a_mapped_code_has_the_targets_mean_and_spread_per_unit():
  trn, z = _codes()
  stats = codematch.code_stats(None, _identity_encode, trn, 3)
  np.testing.assert_allclose(stats[0], np.stack([c.mean(0) for c in z]), atol=1e-6)
  scale, offset = codematch.maps(stats, 1)
  np.testing.assert_array_equal(scale[1], 1.0)  # a reconstruction reads its own code
  np.testing.assert_array_equal(offset[1], 0.0)
  for j in (0, 2):
    mapped = z[1] * scale[j] + offset[j]
    live = np.ones((2, 2, 3), bool)
    live[0, 0, 0] = j != 0  # identity 0's dead unit: floored, not a ratio of 0
    np.testing.assert_allclose(mapped.mean(0), z[j].mean(0), atol=1e-5)
    np.testing.assert_allclose(mapped.std(0)[live], z[j].std(0)[live], rtol=1e-4)
  floor = codematch.SD_FLOOR * float(np.stack([c.std(0) for c in z]).mean())
  assert stats[1][0, 0, 0, 0] == pytest.approx(floor, rel=1e-5)
  assert np.isfinite(codematch.maps(stats, 0)[0]).all()
  # A face of unknown identity is read from the other identities' mean statistics.
  scale, offset = codematch.into(stats, 2)
  mu_s, sd_s = (stats[0][0] + stats[0][1]) / 2, (stats[1][0] + stats[1][1]) / 2
  np.testing.assert_allclose(scale, stats[1][2] / sd_s, rtol=1e-6)
  np.testing.assert_allclose(mu_s * scale + offset, stats[0][2], atol=1e-6)
  with pytest.raises(ValueError, match="identity 1 has 1 training images"):
    codematch.code_stats(None, _identity_encode, {"image": trn["image"][:3], "identity": np.array([0, 0, 1])}, 2)


def test_the_decoders_read_the_mapped_code(tiny_config):
  """decode_all with maps and swap with an affine decode z * scale + offset: the identity map
  changes nothing, and scale 0 gives every face the one code `offset`, so one picture."""
  cfg = assemble.checked_config(tiny_config())
  a = assemble.assemble(cfg)
  params = init_params(a.model, cfg.model)
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
  z = np.asarray(jit_quick(lambda p, v: a.model.apply(p, v, method="encode"))(params, x))
  dec = jit_quick(lambda p, v, m: a.model.apply(p, v, m, method="decode_all"))
  plain = np.asarray(jit_quick(lambda p, v: a.model.apply(p, v, method="decode_all"))(params, x))
  ones, zeros = np.ones((2,) + z.shape[1:], np.float32), np.zeros((2,) + z.shape[1:], np.float32)
  np.testing.assert_allclose(dec(params, x, (ones, zeros)), plain, atol=1e-6)
  offset = np.stack([zeros[0], z[0]])  # decoder 1 reads face 0's code for every face
  out = np.asarray(dec(params, x, (np.stack([ones[0], zeros[0]]), offset)))
  np.testing.assert_allclose(out[0], plain[0], atol=1e-6)
  np.testing.assert_allclose(out[1], np.broadcast_to(plain[1, :1], out[1].shape), atol=1e-6)
  assert np.abs(plain[1, 1:] - plain[1, :1]).max() > 1e-3  # without it the faces differ
  swap = np.asarray(jit_quick(lambda p, v, f: a.model.apply(p, v, 1, f, method="swap"))(
      params, x, (zeros[0], z[0])))
  np.testing.assert_allclose(swap, out[1], atol=1e-6)


def test_evaluation_calibration_and_swaps_use_the_source_identitys_maps(tiny_config, tiny_data):
  trn, test = tiny_data
  with pytest.raises(config_lib.ConfigError, match=r"config.eval.code_match='yes'; valid: none, train"):
    assemble.checked_config(tiny_config(**{"eval.code_match": "yes"}))
  cfg = assemble.checked_config(tiny_config(**{"eval.code_match": "train", "eval.tone": "train"}))
  a = assemble.assemble(cfg)
  params = init_params(a.model, cfg.model)
  run = inference.Run(cfg, a.model, params, 0, ["0", "1"])
  stats = inference.code_stats(run)  # loads the training data itself
  assert inference.code_stats(run, trn) is stats  # once per run
  x0 = trn["image"][trn["identity"] == 0].astype(np.float32) / 255
  z0 = np.asarray(jit_quick(lambda p, v: a.model.apply(p, v, method="encode"))(params, x0))
  assert stats[0].shape == (2,) + z0.shape[1:]
  np.testing.assert_allclose(stats[0][0], z0.mean(0), atol=1e-5)
  part = codematch.code_stats(params, codematch.make_encode(a.model), trn, 2, per_identity=40)
  np.testing.assert_allclose(part[0][0], z0[:40].mean(0), atol=1e-5)  # 40: a padded batch, cut
  np.testing.assert_allclose(part[1][0], np.maximum(z0[:40].std(0), codematch.SD_FLOOR * part[1].mean()),
                             rtol=1e-3, atol=1e-6)
  seen = []  # (first pixel of the batch, the maps decode_all was given)
  real = decode.make_decode_all(a.model)

  def decode_all(p, x, maps=None):
    seen.append((float(x[0, 0, 0, 0]), maps))
    return real(p, x, maps)
  evaluate.evaluate(params, decode_all, test, 2, code=stats)
  firsts = {i: float(test["image"][test["identity"] == i][0, 0, 0, 0]) / 255 for i in range(2)}
  for i in range(2):
    maps = [m for first, m in seen if first == pytest.approx(firsts[i], abs=1e-6)]
    assert maps, i
    for got, w in zip(maps[0], codematch.maps(stats, i)):
      np.testing.assert_array_equal(got, w)
  # The colour shifts are measured on the matched swaps, so they differ from the plain ones.
  matched = inference.colour_shifts(run, trn)
  plain = inference.colour_shifts(inference.Run(assemble.checked_config(tiny_config(**{"eval.tone": "train"})),
                                                a.model, params, 0, ["0", "1"]), trn)
  assert not np.allclose(matched, plain, atol=1e-5)
  # A swap of identity 0's faces into 1 with its maps is decode_all's with them.
  x = test["image"][test["identity"] == 0][:2].astype(np.float32) / 255
  scale, offset = codematch.maps(stats, 0)
  got, _ = inference.swap(run, x, 1, blend=False, affine=(scale[1], offset[1]))
  np.testing.assert_allclose(got, np.asarray(real(params, x, (scale, offset)))[1, ..., :3], atol=1e-5)
  none = inference.Run(assemble.checked_config(tiny_config()), a.model, params, 0, ["0", "1"])
  assert inference.code_stats(none) is None
