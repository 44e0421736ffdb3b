"""Metrics to the run's metrics file (always) and to W&B (unless disabled). W&B imported lazily."""
from __future__ import annotations

import json
import os
import secrets
from typing import Any

import numpy as np

MODES = ("offline", "online", "disabled")  # config.wandb.mode


def _plain(v):
  if isinstance(v, (np.generic, np.ndarray)):
    return v.item() if np.ndim(v) == 0 else np.asarray(v).tolist()
  return v


def _lines(path: str):
  """(line, parsed row) of a metrics file, skipping lines that are not a JSON object (a line cut
  short by a kill -9); nothing when the file does not exist."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    for ln in f:
      try:
        row = json.loads(ln)
      except json.JSONDecodeError:
        continue
      if isinstance(row, dict):
        yield ln, row


def read_rows(path: str) -> list[dict]:
  """Every well-formed row of a metrics file written by Tracker.log."""
  return [row for _, row in _lines(path)]


def eval_curve(path: str, metric: str) -> list[tuple[int, float]]:
  """(step, value) of `metric` in a metrics file's rows, in step order (a step logged twice: its
  last value)."""
  pts = {int(r["step"]): float(r[metric]) for r in read_rows(path)
         if isinstance(r.get(metric), (int, float)) and "step" in r}
  return sorted(pts.items())


def truncate_jsonl(path: str, max_step: int, drop_eval_at: int | None = None) -> None:
  """Drops lines with step > max_step, so a resumed run does not count replayed steps twice, and
  evaluation lines at step `drop_eval_at` (a finished run evaluated again)."""
  if not os.path.exists(path):
    return
  keep = []
  for ln, row in _lines(path):
    is_eval = any(k.startswith("eval/") for k in row)
    if row.get("step", 0) <= max_step and not (is_eval and row.get("step") == drop_eval_at):
      keep.append(ln if ln.endswith("\n") else ln + "\n")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(keep)
  os.replace(tmp, path)


class Tracker:
  """One per run. `log(step, {...})` writes a JSON line and, if enabled, a W&B row."""

  def __init__(self, workdir: str, path: str, config: dict, *, mode: str, project: str,
               group: str = "", name: str = "", enabled: bool = True):
    self.path = path  # the run's metrics file (workdir.METRICS)
    self.enabled = enabled
    self.run = None
    if enabled and mode != "disabled":
      import wandb  # lazy: GPU images and the train step do not need it
      id_file = os.path.join(workdir, "wandb_run_id")
      under_agent = bool(os.environ.get("WANDB_SWEEP_ID"))
      run_id = None
      if under_agent and mode == "offline":
        mode = "online"  # an agent's sweep only sees runs that report to it
      if not under_agent:
        run_id = open(id_file).read().strip() if os.path.exists(id_file) else secrets.token_hex(4)
      self.run = wandb.init(project=project, dir=workdir, mode=mode, config=config,
                            group=group or None, name=name or None, id=run_id, resume="allow",
                            settings=wandb.Settings(silent=True))
      if run_id:
        with open(id_file, "w") as f:
          f.write(run_id)

  def log(self, step: int, scalars: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self.run is not None:
      self.run.log({k: v for k, v in row.items() if k != "step"}, step=int(step))

  def log_image(self, step: int, key: str, path: str) -> None:
    if self.enabled and self.run is not None:
      import wandb
      self.run.log({key: wandb.Image(path)}, step=int(step))

  def summary(self, values: dict[str, Any]) -> None:
    if self.enabled and self.run is not None:
      for k, v in values.items():
        self.run.summary[k] = _plain(v)

  def close(self) -> None:
    if self.run is not None:
      self.run.finish()
      self.run = None
