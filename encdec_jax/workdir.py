"""A run's workdir, and `RunFolder`, the one owner of what is written in it.

WORKDIR/
  config.json           the config the run started with (atomic), config_changes.jsonl
  .lock                 held while a process trains or evaluates in it (flock)
  checkpoints/<step>/   Orbax (encdec_jax/checkpoint.py)
  metrics.jsonl         one JSON row per logged step (encdec_jax/tracking.py), eval rows once each
  previews/step_*.png   preview grids
  eval.json             the final evaluation (atomic, strict JSON: NaN/Inf written as null)
  tone.json             eval.tone=train: each evaluated step's tone shifts (encdec_jax/calibration.py),
                        which swaps of that checkpoint reuse (atomic)
  nonfinite_stop.json   present after a stop on a NaN/Inf loss
  wandb/                W&B's offline files (unless wandb.mode=disabled)
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import time

from encdec_jax.config import ConfigError, default_for, flatten

CONFIG = "config.json"
EVAL = "eval.json"
METRICS = "metrics.jsonl"
TONE = "tone.json"
EVAL_SAMPLES = "eval_samples.npz"  # eval.json's per-image scores: name/<part k> -> (images,)
INIT_FROM = "init_from.json"  # the run it started from (config.train.init_from): name, hash, step


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
  network = [k for k in refused if changes_the_network(k)]
  if network:  # even when allowed: the checkpoint holds another network's weights
    raise ConfigError(f"workdir {workdir!r} holds a run of another network; differing fields: "
                      + describe_diff(old, new, network)
                      + ". Its checkpoints are that network's weights, so no flag continues it "
                      "with these (not --allow_config_change either). Use a new --workdir; to "
                      "start a new run from this one's weights where they fit, "
                      f"--config.train.init_from={workdir}.")
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
  write_json(os.path.join(workdir, CONFIG), cfg_dict)
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
  """The config.json of a run's workdir, or None if it has none; ConfigError naming the file if it
  is damaged (not a JSON object)."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    return parse_config_json(f.read(), path)


def parse_config_json(raw: bytes, path: str) -> dict:
  from encdec_jax.config import ConfigError
  try:
    d = json.loads(raw)
  except (ValueError, UnicodeDecodeError) as e:
    raise ConfigError(f"{path} is damaged ({type(e).__name__}: {e}); restore it, or move the run "
                      f"folder away and start the run again") from None
  if not isinstance(d, dict):
    raise ConfigError(f"{path} is damaged (a JSON {type(d).__name__}, not a config); restore it, or "
                      f"move the run folder away and start the run again")
  return d


# Fields added with a change of the data itself: a run saved without them trained on other data,
# which no value of the field brings back (synthetic_faces 2.x framed whole heads, uncropped).
BEFORE_FIELD = {"data.face_type": "head shots, before face types (synthetic_faces 2.x)"}


def config_diff(saved: dict, cfg_dict: dict) -> tuple[dict, dict, list[str]]:
  """(old flat, new flat, sorted differing fields that matter for a resume). A field added since
  the saved run was started compares as its default, or as BEFORE_FIELD says."""
  old, new = flatten(saved), flatten(cfg_dict)
  for k in set(new) - set(old):
    old[k] = BEFORE_FIELD[k] if k in BEFORE_FIELD else default_for(k)
  diff = sorted(k for k in set(old) | set(new)
                if old.get(k) != new.get(k) and not may_change_on_resume(k))
  return old, new, diff


def describe_diff(old: dict, new: dict, diff: list[str]) -> str:
  return ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in diff)


# Fields that do not change what a run computes: a resumed run may extend, log or save differently.
RESUME_FREE = {"train.steps", "train.log_every", "train.preview_every", "train.checkpoint_every",
                "train.keep_checkpoints", "train.nonfinite", "data.dir",
                "model.conv_impl"}  # the conv forms compute the same function with the same params


# Model fields that keep the network: the same function of the same parameters.
SAME_NETWORK = {"model.conv_impl", "model.dtype"}


def changes_the_network(key: str) -> bool:
  """A model field whose change makes a run's checkpoint another network's weights: other shapes
  (model.bottleneck, model.width), or the same shapes read another way (model.input_norm
  "local" and "contrast" both read 6 channels)."""
  return key.startswith("model.") and key not in SAME_NETWORK


def may_change_on_resume(key: str) -> bool:
  return key in RESUME_FREE or key.startswith(("wandb.", "eval."))


def _strict(values: dict) -> tuple[dict, dict]:
  """(values with NaN/Inf floats as None, {key: 'nan' | 'inf' | '-inf'} for those): strict JSON."""
  out, why = {}, {}
  for k, v in values.items():
    if isinstance(v, float) and not math.isfinite(v):
      out[k], why[k] = None, str(v)
    else:
      out[k] = v
  return out, why


def write_json(path: str, value) -> None:
  """Atomic: a reader sees the old file or the new one, never a part."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True, allow_nan=False)
  os.replace(tmp, path)


def write_samples(path: str, step: int, samples: dict) -> None:
  """Atomic: per-image scores {name: [array per part]} as `name/k` entries, and the step."""
  import numpy as np
  tmp = path + ".tmp.npz"
  np.savez(tmp, step=np.int64(step),
           **{f"{name}/{k}": np.asarray(a, np.float32) for name, parts in samples.items()
              for k, a in enumerate(parts)})
  os.replace(tmp, path)


def read_samples(workdir: str, step: int) -> dict[str, list] | None:
  """A run's per-image scores of `step`'s evaluation, {name: [array per part]}, or None when it has
  none, another step's, or they cannot be read."""
  import numpy as np
  try:
    with np.load(os.path.join(workdir, EVAL_SAMPLES)) as z:
      if int(z["step"]) != step:
        return None
      out: dict[str, dict] = {}
      for key in z.files:
        if key != "step":
          name, _, k = key.rpartition("/")
          out.setdefault(name, {})[int(k)] = z[key]
  except (OSError, ValueError, KeyError):
    return None
  return {name: [parts[k] for k in sorted(parts)] for name, parts in out.items()}


def read_eval(workdir: str) -> dict | None:
  """A run's eval.json, or None when it has none or it cannot be read (cut short, not JSON):
  such a run is evaluated again."""
  try:
    with open(os.path.join(workdir, EVAL)) as f:
      ev = json.load(f)
  except (OSError, ValueError):
    return None
  return ev if isinstance(ev, dict) else None


def finished_eval(workdir: str, cfg_dict: dict) -> dict | None:
  """The run's eval.json when the run finished with this config: its evaluation is at the
  config's last step and was made with the same eval.* settings (which may change on a resume,
  so a re-run with other ones evaluates again) and no other field differs. None otherwise: the
  run is to be trained on, or evaluated again."""
  ev = read_eval(workdir)
  saved = saved_config(workdir) if ev is not None else None
  if saved is None:
    return None
  old, new, diff = config_diff(saved, cfg_dict)
  steps = new.get("train.steps")
  evals = {k for k in set(old) | set(new) if k.startswith("eval.")}
  if diff or ev.get("step") != steps or old.get("train.steps") != steps:
    return None
  return None if any(old.get(k) != new.get(k) for k in evals) else ev


def config_hash(raw: bytes) -> str:
  """A run's config hash: sha256 of its config.json bytes, first 12 hex digits."""
  return hashlib.sha256(raw).hexdigest()[:12]


def shifts_problem(value, identities: int) -> str | None:
  """Why `value` cannot be a run's (N, N, 3) colour shifts, or None: the shape for N identities,
  every value finite and at most 1 in size (a shift of a colour in [0, 1])."""
  import numpy as np
  try:
    a = np.asarray(value, np.float64)
  except (TypeError, ValueError):
    return "not a table of numbers"
  if a.shape != (identities, identities, 3):
    return f"shape {a.shape}, not ({identities}, {identities}, 3) for this run's {identities} identities"
  if not np.isfinite(a).all():
    return "non-finite values"
  if np.abs(a).max() > 1:
    return f"a shift of {np.abs(a).max():.3g}, beyond 1"
  return None


def tone_entry(step: int, config_sha256: str, shifts) -> dict:
  """tone.json's entry for one checkpoint: its shifts and what ties them to it."""
  return {"step": int(step), "config_sha256": config_sha256,
          "shifts": [[[float(c) for c in pair] for pair in row] for row in shifts]}


def read_tone(workdir: str, step: int, identities: int, config_sha256: str):
  """(the (N, N, 3) colour shifts that the evaluation of this checkpoint (`step`, config hash)
  wrote to tone.json, None) when its entry is there and sound; (None, why not) when an entry is
  there but cannot be used; (None, None) when there is none. Shifts not used are computed again
  from the training faces."""
  import numpy as np
  path = os.path.join(workdir, TONE)
  try:
    with open(path) as f:
      saved = json.load(f)
  except FileNotFoundError:
    return None, None
  except (OSError, ValueError) as e:
    return None, f"{path} cannot be read ({e})"
  if not isinstance(saved, dict) or str(step) not in saved:
    return None, None if isinstance(saved, dict) else f"{path} is not a table of steps"
  e = saved[str(step)]
  where = f"{path}, step {step}"
  if not isinstance(e, dict) or "shifts" not in e:
    return None, f"{where}: no record of the checkpoint it was computed from"
  if e.get("step") != step or e.get("config_sha256") != config_sha256:
    return None, (f"{where}: computed from another checkpoint (step {e.get('step')}, config "
                  f"{e.get('config_sha256')}; this one: step {step}, config {config_sha256})")
  why = shifts_problem(e["shifts"], identities)
  if why:
    return None, f"{where}: {why}"
  return np.asarray(e["shifts"], np.float32), None


class RunFolder:
  """Everything a run writes in its workdir goes through here: the config (commit), the lock,
  checkpoints, metrics rows and W&B (the tracker), previews, eval.json and the non-finite marker.
  `main=False` (other processes of a multi-host run): checks and writes nothing but checkpoints,
  which every process saves together.

    f = RunFolder(workdir, cfg_dict, cfg)          # checks the workdir (writable, same config)
    with f.lock():
      f.begin(start)                               # commit; metrics after `start` dropped; tracker
      f.log(step, row); f.preview(step, grid); f.checkpoints.save(...)
      f.write_eval(final)                          # eval.json + the tracker's final row
  """

  def __init__(self, workdir: str, cfg_dict: dict, cfg, *, main: bool = True,
               allow_config_change: bool = False):
    self.path, self.cfg_dict, self.cfg, self.main = os.path.abspath(workdir), cfg_dict, cfg, main
    self.changed = check_workdir(self.path, cfg_dict, allow_config_change) if main else None
    self.tracker = None
    self._ckpt = None

  @property
  def name(self) -> str:
    return os.path.basename(self.path)

  def lock(self):
    return lock(self.path) if self.main else contextlib.nullcontext()

  @property
  def checkpoints(self):
    if self._ckpt is None:
      from encdec_jax import checkpoint as ckpt_lib
      self._ckpt = ckpt_lib.Checkpointer(self.path, self.cfg.train.keep_checkpoints)
    return self._ckpt

  def begin(self, start: int) -> None:
    """The run has started from step `start` (restored or initialised): its config is recorded,
    metrics rows after `start` (steps to be replayed) are dropped, and so are the evaluation rows
    at `start` when the run ends there (a finished run evaluated again), then the tracker opens."""
    if self.main:
      commit(self.path, self.cfg_dict, self.changed)
      self.drop_metrics_after(start, drop_eval_at=start if start >= self.cfg.train.steps else None)
    self.open_tracker()

  def open_tracker(self, mode: str | None = None) -> None:
    from encdec_jax import tracking
    w = self.cfg.wandb
    self.tracker = tracking.Tracker(self.path, os.path.join(self.path, METRICS), self.cfg_dict, mode=mode or w.mode, project=w.project,
                                    group=w.group, name=w.name or self.name, enabled=self.main)

  def drop_metrics_after(self, step: int, drop_eval_at: int | None = None) -> None:
    from encdec_jax import tracking
    tracking.truncate_jsonl(os.path.join(self.path, METRICS), step, drop_eval_at)

  def log(self, step: int, row: dict) -> None:
    self.tracker.log(step, row)

  def preview(self, step: int, grid) -> None:
    if not self.main:
      return
    from encdec_jax import images as image_lib
    path = image_lib.save_png(os.path.join(self.path, "previews", f"step_{step:07d}.png"), grid,
                              extra={"step": step}, scale=2)
    self.tracker.log_image(step, "preview", path)

  def write_eval(self, final: dict, samples: dict | None = None) -> None:
    """eval.json (atomic; NaN/Inf as null, named under 'nonfinite') and the final metrics row;
    with `samples` (evaluate's per-image scores), eval_samples.npz first, so an eval.json never
    sits beside another evaluation's samples."""
    if not self.main:
      return
    if samples is not None:
      write_samples(os.path.join(self.path, EVAL_SAMPLES), final["step"], samples)
    scalars = {k: v for k, v in final.items() if k != "step"}
    self.tracker.log(final["step"], scalars)
    self.tracker.summary(scalars)
    out, why = _strict(final)
    if why:
      out["nonfinite"] = why
    write_json(os.path.join(self.path, EVAL), out)

  def write_tone(self, step: int, shifts) -> None:
    """Adds `step`'s colour shifts to tone.json, tied to this checkpoint by its step and config
    hash (atomic; other steps' entries kept)."""
    if not self.main:
      return
    path = os.path.join(self.path, TONE)
    try:
      with open(path) as f:
        saved = json.load(f)
      saved = saved if isinstance(saved, dict) else {}
    except (OSError, ValueError):
      saved = {}
    with open(os.path.join(self.path, CONFIG), "rb") as f:
      saved[str(step)] = tone_entry(step, config_hash(f.read()), shifts)
    write_json(path, saved)

  def write_init_from(self, record: dict) -> None:
    """init_from.json: the run this one's weights started from (its folder name, config hash and
    step, never a local path) and which decoders it gave."""
    if self.main:
      write_json(os.path.join(self.path, INIT_FROM), record)

  def mark_nonfinite_stop(self, message: str) -> None:
    if self.main:
      mark_nonfinite_stop(self.path, message)

  def close(self) -> None:
    try:
      if self._ckpt is not None:
        self._ckpt.close()
        self._ckpt = None
    finally:
      if self.tracker is not None:
        self.tracker.close()
