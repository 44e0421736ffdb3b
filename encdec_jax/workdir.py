"""A run's workdir: created and probed for writing at start-up, and guarded against mixing configs."""
from __future__ import annotations

import json
import os
import time

from encdec_jax.config import ConfigError, default_for


def check_workdir(workdir: str, cfg_dict: dict, allow_config_change: bool = False) -> None:
  """Creates the workdir, fails early if it is not writable or holds another config."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise OSError(f"workdir {workdir!r} is not writable: {e}") from None
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    old, new = flatten(saved), flatten(cfg_dict)
    for k in set(new) - set(old):  # a field added since that run was started: its default
      old[k] = default_for(k)
    diff = sorted(k for k in set(old) | set(new)
                  if old.get(k) != new.get(k) and not may_change_on_resume(k))
    if diff and not allow_config_change:
      raise ConfigError(f"workdir {workdir!r} holds a run with another config; differing fields: "
                        + ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in diff)
                        + ". Use a new --workdir, or --allow_config_change to continue this run "
                        "with the new config.")
    if diff:
      with open(os.path.join(workdir, "config_changes.jsonl"), "a") as f:
        f.write(json.dumps({"time": time.time(), "changed": {k: [old.get(k), new.get(k)] for k in diff}})
                + "\n")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(cfg_dict, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


# Fields that do not change what a run computes: a resumed run may extend, log or save differently.
RESUME_FREE = {"train.steps", "train.log_every", "train.preview_every", "train.checkpoint_every",
                "train.keep_checkpoints", "train.nonfinite", "data.dir"}


def may_change_on_resume(key: str) -> bool:
  return key in RESUME_FREE or key.startswith(("wandb.", "eval."))


def flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
