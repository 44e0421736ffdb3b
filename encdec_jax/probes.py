"""Linear probes of the shared latent: is it shared by the identities, and does it carry pose and
expression in a form every decoder can read?

A swap decodes A's code with B's decoder. If the encoder writes identity into the code (a probe
reads who it is), B's decoder sees codes unlike any it learned from: it paints its average face
and the swap loses A's expression although A's own reconstructions keep it. Two probes, ridge
regressions fitted on training faces and scored on held-out ones (diagnostics only: nothing here
trains the model):

  probe_id_accuracy    identity read linearly from the code (one-vs-rest); the ideal is chance
  probe_attr_same      pose/expression (standardised, the judges' readable factors) fitted on
                       identity i's codes, scored on identity i's held-out codes: the probe's floor
  probe_attr_cross     the same probe scored on the other identities' codes: near the floor when
                       the code means the same thing whoever it encodes
"""
from __future__ import annotations

import jax
import numpy as np

from encdec_jax import bootstrap
from encdec_jax.data.render import POSE_EXPRESSION
from encdec_jax.pixels import to_unit_float

RIDGE = 0.01  # x the number of examples, on standardised codes: a light penalty
MAX_FIT = 512  # training faces per identity the probes are fitted on


def make_encode(model):
  return jax.jit(lambda p, x: model.apply(p, x, method="encode").reshape(x.shape[0], -1))


def codes(params, encode, images_u8: np.ndarray, batch: int = 64) -> np.ndarray:
  x = to_unit_float(images_u8)
  return np.concatenate([np.asarray(encode(params, x[k:k + batch]), np.float32)
                         for k in range(0, len(x), batch)])


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float = RIDGE):
  """(w, b) of the ridge regression y ~ x w + b (x standardised inside; lam scaled by the
  feature count). Solved in the smaller of the primal and dual forms."""
  mu, sd = x.mean(0), x.std(0) + 1e-6
  z = (x - mu) / sd
  ym = y.mean(0)
  n, d = z.shape
  if d <= n:
    w = np.linalg.solve(z.T @ z + lam * n * np.eye(d), z.T @ (y - ym))
  else:
    w = z.T @ np.linalg.solve(z @ z.T + lam * n * np.eye(n), y - ym)
  return (w / sd[:, None], ym - (mu / sd) @ w)


def ridge_predict(fit, x: np.ndarray) -> np.ndarray:
  w, b = fit
  return x @ w + b


def probe_scores(train_codes, train_ids, train_attrs, test_codes, test_ids, test_attrs,
                 readable, n_ids: int) -> dict[str, float]:
  """The probes of the module docstring from codes (B, D), identities (B,) and standardised
  factors (B, 7) (None: no attribute probes); `readable` (7,) bool selects the factors scored."""
  onehot = np.eye(n_ids, dtype=np.float32)[train_ids]
  fit = ridge_fit(train_codes, onehot)
  correct = ridge_predict(fit, test_codes).argmax(1) == test_ids
  out = {"probe_id_accuracy": float(correct.mean()),
         "probe_id_accuracy_se": bootstrap.standard_error([correct])}
  if train_attrs is None or test_attrs is None:
    return out
  same, cross = [], []
  for i in range(n_ids):
    fit = ridge_fit(train_codes[train_ids == i], train_attrs[train_ids == i])
    err = lambda sel: np.abs(ridge_predict(fit, test_codes[sel]) - test_attrs[sel]).mean(0)
    same.append(err(test_ids == i))
    cross.append(err(test_ids != i))
  same, cross = np.mean(same, 0), np.mean(cross, 0)
  out["probe_attr_same"] = float(same[readable].mean())
  out["probe_attr_cross"] = float(cross[readable].mean())
  for n, s, c in zip(POSE_EXPRESSION, same, cross):
    out[f"probe_attr_same/{n}"], out[f"probe_attr_cross/{n}"] = float(s), float(c)
  return out


def latent_probes(params, encode, train: dict, test: dict, n_ids: int, judges=None) -> dict[str, float]:
  """eval/probe_* for a model's params on the data's train and test arrays ('factors' where the
  data has them, standardised as the judges do)."""
  rng = np.random.default_rng(0)
  pick = np.concatenate([rng.permutation(np.flatnonzero(train["identity"] == i))[:MAX_FIT]
                         for i in range(n_ids)])
  tr_c = codes(params, encode, train["image"][pick])
  te_c = codes(params, encode, test["image"])
  attrs = [None, None]
  readable = np.ones(len(POSE_EXPRESSION), bool)
  if "factors" in train and "factors" in test:
    k = len(POSE_EXPRESSION)
    f_tr, f_te = train["factors"][pick][:, :k], test["factors"][:, :k]
    mean, std = f_tr.mean(0), f_tr.std(0) + 1e-6
    if judges is not None and judges.attr_floors is not None:
      mean, std, readable = judges.attr_mean, judges.attr_std, judges.readable
    attrs = [(f_tr - mean) / std, (f_te - mean) / std]
  out = probe_scores(tr_c, train["identity"][pick], attrs[0], te_c, test["identity"], attrs[1],
                     readable, n_ids)
  return {f"eval/{k}": v for k, v in out.items()}


def for_run(model, train: dict, test: dict, n_ids: int, judges=None):
  """params -> eval/probe_* scalars, compiled once for `model`."""
  encode = make_encode(model)
  return lambda params: latent_probes(params, encode, train, test, n_ids, judges)
