"""Judges of swap quality: an identity classifier and a pose/expression regressor.

Papers judge a face swap by identity retrieval (is the swap recognised as the target?), pose and
expression error (did the source's survive?) and reconstruction. These two small CNNs are the
analogues, trained by the project on the dataset's own training images (never on swaps), with
light blur augmentation so the autoencoders' softer outputs are judged fairly, and cached per
dataset (Orbax, under the TFDS data dir). Their accuracy on held-out renderings is printed and
returned so nobody trusts a broken judge.

  classifier: image -> identity logits (N).
  regressor:  image -> the 7 pose and expression factors (render.POSE_EXPRESSION), standardised
              by the training set's mean and std; only for data that stores factors (synthetic).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax.data import render as R

N_ATTR = len(R.POSE_EXPRESSION)


FEATURES = 128     # random 5x5 conv filters


def features(p: dict, x_BxHxWx3) -> jax.Array:
  """Fixed random features: a seeded 5x5 stride-2 conv bank, ReLU, 4x4 average pooling grid,
  standardised with the training set's statistics."""
  x = jnp.asarray(x_BxHxWx3, jnp.float32)
  h = jax.nn.relu(jax.lax.conv_general_dilated(x, p["filters"], (2, 2), "SAME",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC")))
  b, hh, ww, c = h.shape
  h = h.reshape(b, 4, hh // 4, 4, ww // 4, c).mean((2, 4)).reshape(b, -1)
  return (h - p["mu"]) / p["sd"]


@jax.jit
def _readout(p, w, x):
  return features(p, x) @ w


@dataclasses.dataclass
class Judges:
  feats: dict                 # filters, mu, sd
  classifier: np.ndarray      # (F, N) ridge readout on one-hot identities
  regressor: np.ndarray | None  # (F, 7) ridge readout on standardised factors, None without factors
  num_identities: int
  attr_mean: np.ndarray | None
  attr_std: np.ndarray | None
  accuracy: float             # classifier on held-out real images
  attr_floor: float | None    # regressor MAE (standardised) on held-out real images

  def identify(self, x_BxHxWx3) -> np.ndarray:
    return _batched(lambda x: _readout(self.feats, self.classifier, x), x_BxHxWx3).argmax(-1)

  def attributes(self, x_BxHxWx3) -> np.ndarray:
    """Standardised pose/expression estimates (B, 7)."""
    return _batched(lambda x: _readout(self.feats, self.regressor, x), x_BxHxWx3)


def _local(x):
  """On this process's first device: the judges never take part in cross-process programs
  (in a multi-host run every process fits or loads its own copy)."""
  return jax.device_put(x, jax.local_devices()[0])


def _batched(fn, x, batch=256):
  x = np.asarray(x, np.float32)
  return np.concatenate([np.asarray(fn(_local(x[k:k + batch]))) for k in range(0, len(x), batch)])


def _soften(x):
  """Downsampled 2x and back (bilinear): the softness of a decoder's output."""
  b, h, w, c = x.shape
  return np.asarray(jax.image.resize(jax.image.resize(x, (b, h // 2, w // 2, c), "linear"),
                                     (b, h, w, c), "linear"))


def _ridge(f, y, lam):
  a = f.T @ f + lam * len(f) / 100.0 * np.eye(f.shape[1], dtype=np.float64)
  return np.linalg.solve(a, f.T @ y).astype(np.float32)


def _ridge_cv(f, y, lams=(1.0, 10.0, 100.0, 1000.0, 10000.0)):
  """Ridge with its strength chosen on a fixed 20% of the training images (every 5th, with its
  softened copy: rows are [originals, softened copies]), refitted on all."""
  val = np.tile(np.arange(len(f) // 2) % 5 == 0, 2)
  errs = [np.abs(f[val] @ _ridge(f[~val], y[~val], lam) - y[val]).mean() for lam in lams]
  return _ridge(f, y, lams[int(np.argmin(errs))])


def train_judges(train: dict, test: dict, num_identities: int, steps: int = 0, seed: int = 0) -> Judges:
  """Fits both judges on `train` (arrays with image, identity[, factors]), each image also as a
  softened copy, and scores them on `test`'s real images. (`steps` is unused: the readouts are
  closed-form ridge regressions; kept so cached judges are keyed by the config.)"""
  del steps
  x = train["image"].astype(np.float32) / 255.0
  x = np.concatenate([x, _soften(x)])
  r = train["image"].shape[1]
  if r % 8:
    raise ValueError(f"judges need a resolution divisible by 8; got {r}")
  filters = np.asarray(jax.random.normal(jax.random.key(seed), (5, 5, 3, FEATURES)) * 0.3)
  raw = {"filters": filters, "mu": np.zeros(FEATURES * 16, np.float32), "sd": np.ones(FEATURES * 16, np.float32)}
  f = _batched(lambda b: features(raw, b), x).astype(np.float64)
  p = {"filters": filters, "mu": f.mean(0).astype(np.float32), "sd": (f.std(0) + 1e-6).astype(np.float32)}
  f = (f - f.mean(0)) / (f.std(0) + 1e-6)
  ids = np.concatenate([train["identity"]] * 2)
  cls = _ridge_cv(f, np.eye(num_identities)[ids])
  reg = mean = std = floor = None
  acc_pred = _batched(lambda b: _readout(p, cls, b), test["image"].astype(np.float32) / 255.0).argmax(-1)
  acc = float((acc_pred == test["identity"]).mean())
  if "factors" in train:
    fa = train["factors"][:, :N_ATTR].astype(np.float64)
    mean, std = fa.mean(0).astype(np.float32), (fa.std(0) + 1e-6).astype(np.float32)
    reg = _ridge_cv(f, np.concatenate([(fa - mean) / std] * 2))
    est = _batched(lambda b: _readout(p, reg, b), test["image"].astype(np.float32) / 255.0)
    floor = float(np.abs(est - (test["factors"][:, :N_ATTR] - mean) / std).mean())
  return Judges(p, cls, reg, num_identities, mean, std, acc, floor)


def cache_dir(data_dir: str, dataset_name: str, steps: int) -> str:
  return os.path.join(data_dir, "judges", f"{dataset_name}_s{steps}")


def save(j: Judges, path: str) -> None:
  """Orbax checkpoint of the arrays plus judges.json (accuracy, floor, factor statistics)."""
  import orbax.checkpoint as ocp
  tmp = path + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  tree = {"feats": j.feats, "classifier": j.classifier}
  if j.regressor is not None:
    tree["regressor"] = j.regressor
  ck = ocp.StandardCheckpointer()
  ck.save(os.path.join(tmp, "arrays"), tree)
  ck.wait_until_finished()
  meta = {"num_identities": j.num_identities, "accuracy": j.accuracy, "attr_floor": j.attr_floor,
          "attr_mean": None if j.attr_mean is None else j.attr_mean.tolist(),
          "attr_std": None if j.attr_std is None else j.attr_std.tolist()}
  with open(os.path.join(tmp, "judges.json"), "w") as f:
    json.dump(meta, f, indent=1)
  shutil.rmtree(path, ignore_errors=True)
  os.replace(tmp, path)


def load(path: str) -> Judges | None:
  import orbax.checkpoint as ocp
  meta_path = os.path.join(path, "judges.json")
  if not os.path.exists(meta_path):
    return None
  meta = json.load(open(meta_path))
  tree = ocp.StandardCheckpointer().restore(os.path.join(path, "arrays"))
  tree = jax.tree.map(np.asarray, tree)
  arr = lambda v: None if v is None else np.asarray(v, np.float32)
  return Judges(tree["feats"], tree["classifier"], tree.get("regressor"), meta["num_identities"],
                arr(meta["attr_mean"]), arr(meta["attr_std"]), meta["accuracy"], meta["attr_floor"])


def get(train: dict, test: dict, num_identities: int, data_dir: str, dataset_name: str,
        steps: int = 400, verbose: bool = True) -> Judges:
  """The cached judges of this dataset, trained (and cached) on first use."""
  path = cache_dir(data_dir, dataset_name, steps)
  single = jax.process_count() == 1  # Orbax synchronises processes: multi-host runs do not cache
  j = load(path) if single else None
  if j is None:
    j = train_judges(train, test, num_identities, steps)
    if single:
      save(j, path)
  if verbose:
    floor = "" if j.attr_floor is None else f", pose/expression MAE {j.attr_floor:.3f} std units"
    print(f"judges ({dataset_name}): identity accuracy {100 * j.accuracy:.1f}% on held-out real "
          f"images{floor}")
  return j


def swap_scores(j: Judges, swaps_BxHxWx3: np.ndarray, source_identity: int, target_identity: int,
                source_factors: np.ndarray | None) -> dict[str, float]:
  """For swaps of one source identity into one target: the share recognised as the target
  (transfer), as the source (leak), and the pose/expression error against the source's factors."""
  x = np.clip(np.asarray(swaps_BxHxWx3, np.float32), 0.0, 1.0)
  ids = j.identify(x)
  out = {"id_transfer": float((ids == target_identity).mean()),
         "id_leak": float((ids == source_identity).mean())}
  if j.regressor is not None and source_factors is not None:
    truth = (source_factors[:, :N_ATTR] - j.attr_mean) / j.attr_std
    out["attr_mae"] = float(np.abs(j.attributes(x) - truth).mean())
  return out
