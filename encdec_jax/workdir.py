"""A run's workdir: created and probed for writing at start-up, and guarded against mixing configs."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

from encdec_jax.config import ConfigError, default_for


def check_workdir(workdir: str, cfg_dict: dict, allow_config_change: bool = False) -> dict:
  """Creates the workdir and fails early if it is not writable or holds another config. Writes
  nothing else: returns the fields that change ({field: [old, new]}, empty if none) for
  `commit`, which records them once the run has really started (restored or initialised)."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise OSError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None
  saved = saved_config(workdir)
  if saved is None:
    return {}
  old, new, diff = config_diff(saved, cfg_dict)
  after_stop = os.path.exists(os.path.join(workdir, NONFINITE_STOP))
  refused = [k for k in diff if not (after_stop and k in AFTER_NONFINITE_STOP)]
  if refused and not allow_config_change:
    hint = (" After a non-finite stop only " + ", ".join(sorted(AFTER_NONFINITE_STOP)) + " may change."
            if after_stop else "")
    raise ConfigError(f"workdir {workdir!r} holds a run with another config; differing fields: "
                      + describe_diff(old, new, refused)
                      + ". Use a new --workdir, or --allow_config_change to continue this run "
                      "with the new config." + hint)
  return {k: [old.get(k), new.get(k)] for k in diff}


def commit(workdir: str, cfg_dict: dict, changed: dict) -> None:
  """Writes config.json, logs the changed fields to config_changes.jsonl, and clears a
  non-finite stop's marker: called once the run has started with this config."""
  if changed:
    with open(os.path.join(workdir, "config_changes.jsonl"), "a") as f:
      f.write(json.dumps({"time": time.time(), "changed": changed}) + "\n")
  path = os.path.join(workdir, "config.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(cfg_dict, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  try:
    os.remove(os.path.join(workdir, NONFINITE_STOP))
  except FileNotFoundError:
    pass


# A run that stopped on a NaN/Inf leaves this file; the remedy (a lower learning rate) is then a
# config change that resuming accepts.
NONFINITE_STOP = "nonfinite_stop.json"
AFTER_NONFINITE_STOP = {"train.lr", "train.b1", "train.b2"}


def mark_nonfinite_stop(workdir: str, message: str) -> None:
  with open(os.path.join(workdir, NONFINITE_STOP), "w") as f:
    json.dump({"time": time.time(), "error": message}, f)


class WorkdirBusy(ConfigError):
  """Another process is running in this workdir."""


@contextlib.contextmanager
def lock(workdir: str):
  """One writer per workdir: an OS lock (flock) on WORKDIR/.lock, held while the run lives. The
  kernel releases it when the process ends, however it ends, so a killed run never blocks."""
  path = os.path.join(workdir, ".lock")
  f = open(path, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise WorkdirBusy(f"workdir {workdir!r} is in use by {holder}; wait for it to finish or use "
                      "another --workdir") from None
  try:
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on host {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
    f.flush()
    yield
  finally:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


def saved_config(workdir: str) -> dict | None:
  """The config.json of a run's workdir, or None if it has none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def config_diff(saved: dict, cfg_dict: dict) -> tuple[dict, dict, list[str]]:
  """(old flat, new flat, sorted differing fields that matter for a resume). A field added since
  the saved run was started compares as its default."""
  old, new = flatten(saved), flatten(cfg_dict)
  for k in set(new) - set(old):
    old[k] = default_for(k)
  diff = sorted(k for k in set(old) | set(new)
                if old.get(k) != new.get(k) and not may_change_on_resume(k))
  return old, new, diff


def describe_diff(old: dict, new: dict, diff: list[str]) -> str:
  return ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in diff)


# Fields that do not change what a run computes: a resumed run may extend, log or save differently.
RESUME_FREE = {"train.steps", "train.log_every", "train.preview_every", "train.checkpoint_every",
                "train.keep_checkpoints", "train.nonfinite", "data.dir",
                "model.conv_impl"}  # the conv forms compute the same function with the same params


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


@contextlib.contextmanager
def cache_lock(path: str, what: str):
  """Waits for, then holds, an OS lock on PATH.lock while a shared cache (a dataset, the judges)
  is prepared, so concurrent runs prepare it once instead of crashing one another."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".lock", "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      print(f"waiting for another process preparing {what} ({path})", flush=True)
      fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
