"""The judges of a dataset, fitted once and cached next to its TFDS data (an Orbax checkpoint per
member of the panel, under <data dir>/judges/<dataset>_v<judges.VERSION>): every run and every
evaluation of a dataset reads with the same judges, and a cache of another VERSION is refitted,
never misread."""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from encdec_jax import judges as J
from encdec_jax.judges import Judges, Panel


def cache_dir(data_dir: str, dataset_name: str) -> str:
  return os.path.join(data_dir, "judges", f"{dataset_name}_v{J.VERSION}")


def _vec(v):
  return None if v is None else np.asarray(v, np.float32)


def _list(v):
  return None if v is None else np.asarray(v).tolist()


def _write_judges(j: Judges, path: str) -> None:
  """One member's arrays (an Orbax checkpoint) and judges.json into the new folder `path`."""
  import orbax.checkpoint as ocp
  os.makedirs(path)
  tree = {"feats": j.feats, "classifier": j.classifier}
  if j.regressor is not None:
    tree.update(regressor=j.regressor, patch_stats=j.patch_stats)
  if j.locator is not None:
    tree["locator"] = j.locator
  ck = ocp.StandardCheckpointer()
  ck.save(os.path.join(path, "arrays"), tree)
  ck.wait_until_finished()
  meta = {"num_identities": j.num_identities, "accuracy": j.accuracy,
          "attr_mean": _list(j.attr_mean), "attr_std": _list(j.attr_std),
          "attr_floors": _list(j.attr_floors), "attr_guess": _list(j.attr_guess),
          "attr_range": _list(j.attr_range), "patch_scale": j.patch_scale,
          "locate_px": j.locate_px}
  with open(os.path.join(path, "judges.json"), "w") as f:
    json.dump(meta, f, indent=1)


def _read_judges(path: str) -> Judges:
  import orbax.checkpoint as ocp
  meta = json.load(open(os.path.join(path, "judges.json")))
  tree = ocp.StandardCheckpointer().restore(os.path.join(path, "arrays"))
  tree = jax.tree.map(np.asarray, tree)
  return Judges(tree["feats"], tree["classifier"], tree.get("regressor"), meta["num_identities"],
                _vec(meta["attr_mean"]), _vec(meta["attr_std"]), meta["accuracy"],
                _vec(meta["attr_floors"]), _vec(meta["attr_guess"]), tree.get("patch_stats"),
                _vec(meta.get("attr_range")), float(meta.get("patch_scale", 1.0)),
                tree.get("locator"), meta.get("locate_px"))


def save(panel: Panel, path: str) -> None:
  """Each member in member<k>/ (an Orbax checkpoint of its arrays and its judges.json), and the
  panel's own scores and VERSION in panel.json; written beside `path` and moved into place, so an
  interrupted save leaves no half cache. `path` may be relative (a relative config.data.dir):
  Orbax takes only absolute ones."""
  path = os.path.abspath(path)
  tmp = path + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for k, m in enumerate(panel.members):
    _write_judges(m, os.path.join(tmp, f"member{k}"))
  meta = {"version": J.VERSION, "members": len(panel.members), "accuracy": panel.accuracy,
          "attr_floors": _list(panel.attr_floors), "attr_guess": _list(panel.attr_guess),
          "locate_px": panel.locate_px}
  with open(os.path.join(tmp, "panel.json"), "w") as f:
    json.dump(meta, f, indent=1)
  shutil.rmtree(path, ignore_errors=True)
  os.replace(tmp, path)


def load(path: str) -> Panel | None:
  """The panel of judges saved at `path`, or None if there is none of this VERSION."""
  path = os.path.abspath(path)
  meta_path = os.path.join(path, "panel.json")
  if not os.path.exists(meta_path):
    return None
  meta = json.load(open(meta_path))
  if meta.get("version") != J.VERSION:
    return None
  members = tuple(_read_judges(os.path.join(path, f"member{k}")) for k in range(meta["members"]))
  return Panel(members, meta["accuracy"], _vec(meta["attr_floors"]), _vec(meta["attr_guess"]),
               meta.get("locate_px"))


def for_config(cfg, train: dict, test: dict) -> Panel | None:
  """The panel of judges of the configured dataset (fitted once, cached next to the TFDS data), or
  None if eval.judges is off. On synthetic faces they are also fitted on face swaps of the training
  images (synthetic.training_face_swaps), so the frame cannot tell them the identity."""
  if not cfg.eval.judges:
    return None
  from encdec_jax.align import zoom_of
  from encdec_jax.data import loading, synthetic
  s = loading.synthetic_settings(cfg)
  extra = (lambda: synthetic.training_face_swaps(**s, frames=synthetic.split_frames(train, s))) if s else None
  return get(train, test, cfg.data.identities, cfg.data.dir or synthetic.default_data_dir(),
             loading.dataset_key(cfg), extra=extra, patch_scale=zoom_of(cfg.data.face_type))


def get(train: dict, test: dict, num_identities: int, data_dir: str, dataset_name: str,
        verbose: bool = True, extra=None, patch_scale: float = 1.0) -> Panel:
  """The cached panel of judges of this dataset, fitted (and cached) on first use; `extra`: a
  function giving more training arrays (see train_judges), called only when fitting."""
  from encdec_jax.cachelock import cache_lock
  path = cache_dir(data_dir, dataset_name)
  fit = lambda: J.train_panel(train, test, num_identities, extra=extra() if extra else None,
                              patch_scale=patch_scale)
  if jax.process_count() > 1:  # Orbax synchronises processes: multi-host runs do not cache
    j = fit()
  else:
    with cache_lock(path, "the judges"):  # concurrent runs fit them once
      j = load(path)
      if j is None:
        j = fit()
        save(j, path)
  if verbose:
    print(f"judges ({dataset_name}): {J.describe(j)}")
  return j
