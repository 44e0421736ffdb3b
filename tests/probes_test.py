"""Latent probes (encdec_jax/probes.py) on codes whose content is known."""
import numpy as np

from encdec_jax import probes


def _codes(rng, ids, attrs, identity_in_code: bool, shared: bool):
  """Codes: the factors through a per-identity (or one shared) linear map, plus noise, plus an
  identity direction when `identity_in_code`."""
  maps = [rng.normal(size=(7, 32)) for _ in range(2)]
  z = np.stack([attrs[k] @ maps[0 if shared else ids[k]] for k in range(len(ids))])
  if identity_in_code:
    z[:, 0] += 5.0 * ids
  return z + 0.05 * rng.normal(size=z.shape)


def _scores(identity_in_code, shared):
  rng = np.random.default_rng(0)
  ids = np.repeat([0, 1], 200)
  attrs = rng.normal(size=(400, 7))
  z = _codes(rng, ids, attrs, identity_in_code, shared)
  tr, te = np.arange(400) % 4 != 0, np.arange(400) % 4 == 0
  return probes.probe_scores(z[tr], ids[tr], attrs[tr], z[te], ids[te], attrs[te], np.ones(7, bool), 2)


def test_a_shared_code_hides_identity_and_transfers_its_factors():
  s = _scores(identity_in_code=False, shared=True)
  assert 0.3 <= s["probe_id_accuracy"] <= 0.7  # chance for two identities
  assert s["probe_attr_same"] < 0.1 and s["probe_attr_cross"] < 0.1
  from encdec_jax import metrics  # every probe scalar is explained
  assert [k for k in s if metrics.entry(k) is None] == []


def test_identity_in_the_code_is_read_and_a_private_code_does_not_transfer():
  s = _scores(identity_in_code=True, shared=False)
  assert s["probe_id_accuracy"] >= 0.95
  assert s["probe_attr_same"] < 0.1 and s["probe_attr_cross"] > 0.5  # guessing is ~0.8


def test_ridge_matches_least_squares_without_penalty():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(50, 5)), rng.normal(size=(50, 2))
  w, b = probes.ridge_fit(x, y, lam=0.0)
  ref = np.linalg.lstsq(np.c_[x, np.ones(50)], y, rcond=None)[0]
  np.testing.assert_allclose(np.r_[w, b[None]], ref, atol=1e-6)
  wide = rng.normal(size=(10, 40))  # more features than examples: the dual form
  w, b = probes.ridge_fit(wide, y[:10], lam=1e-9)
  np.testing.assert_allclose(probes.ridge_predict((w, b), wide), y[:10], atol=1e-4)
