"""The training loop: what happens every N steps, for one run or a group of members.

  train_and_evaluate(config, workdir)         one run (data-parallel over every device and host)
  train_runs([config, ...], [workdir, ...])   several runs as members of one program (one process)

Both drive one loop over a program (encdec_jax/program.py: `Trainer`, or `members.Group`); each
run's folder is written through its `workdir.RunFolder`. The step itself is encdec_jax/step.py,
its loss encdec_jax/losses/compose.py.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from encdec_jax import assemble as assemble_lib
from encdec_jax import calibration, codematch
from encdec_jax import evaluate as eval_lib
from encdec_jax import judge_cache
from encdec_jax import preemption, probes, warm_start
from encdec_jax import workdir as workdir_lib
from encdec_jax.config import ExperimentConfig
from encdec_jax.data.loading import DATA_REPORT, load_data, own_crops_fn
from encdec_jax.losses import compose
from encdec_jax.preemption import Preempted
from encdec_jax.preview import preview_grid
from encdec_jax.program import Trainer
from encdec_jax.workdir import RunFolder


class NonFiniteError(FloatingPointError):
  """A step's loss or gradient was NaN/Inf (train.nonfinite='stop'); no checkpoint after it."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       progress: bool = True, allow_config_change: bool = False) -> dict[str, Any]:
  """Trains (resuming from WORKDIR's latest checkpoint), evaluates, returns the final scalars.

  Raises Preempted after saving if SIGTERM/SIGINT arrives, NonFiniteError (nothing saved after
  the last good step) on a NaN/Inf in 'stop' mode, ConfigError/OSError before any compile on
  bad config, data or workdir (WorkdirBusy if another process runs in it)."""
  out = train_runs([config], [workdir], progress=progress, allow_config_change=allow_config_change)[0]
  if isinstance(out, NonFiniteError):
    raise out
  return out


def train_runs(configs: list, workdirs: list[str], *, progress: bool = True,
               allow_config_change: bool = False) -> list:
  """Trains the runs together, as members of one program when there are several (resuming from
  the latest step all of them saved), evaluates each, and returns per run its final scalars or
  the NonFiniteError that stopped it (the others go on). Several runs: single-process only."""
  cfgs = [assemble_lib.checked_config(c) for c in configs]  # every check before data or compile
  if len(cfgs) > 1 and jax.process_count() > 1:
    raise ValueError("members train in one process; run multi-host sweeps with --members=1")
  dicts = [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in configs]
  main = jax.process_index() == 0
  folders = [RunFolder(w, d, c, main=main, allow_config_change=allow_config_change)
             for w, d, c in zip(workdirs, dicts, cfgs)]
  with contextlib.ExitStack() as locks:
    for f in folders:
      locks.enter_context(f.lock())
    done = [workdir_lib.finished_eval(f.path, d) for f, d in zip(folders, dicts)]
    if all(ev is not None for ev in done):  # nothing to train: their evaluations stand
      for f, ev in zip(folders, done if main else ()):
        print(f"{f.name}: finished at step {ev['step']}; its eval.json stands (python -m "
              f"experiments.evaluate --workdir={f.path} evaluates it again)", flush=True)
      return done
    return _train(cfgs, folders, progress)


def _common_start(folders) -> int:
  """The latest step every run saved (0 if one has none): a killed group resumes there."""
  steps = [set(f.checkpoints.all_steps()) for f in folders]
  common = set.intersection(*steps)
  return max(common) if common else 0


def _program(cfgs: list[ExperimentConfig]):
  if len(cfgs) == 1:
    return Trainer(cfgs[0])
  from encdec_jax import members
  return members.Group(cfgs)


def _train(cfgs, folders, progress):
  c0 = cfgs[0]
  main = folders[0].main
  masks = any(compose.needs_masks(c) for c in cfgs)
  try:
    start = _common_start(folders)
    # A first start reads its init_from source (a bad one fails here, before the data is made);
    # a resumed run continues from its own checkpoint and never reads it again.
    warm = warm_start.load_all(cfgs) if start == 0 else [None] * len(cfgs)
    if jax.process_count() > 1:  # process 0 prepares the TFDS data, the others then read it
      from jax.experimental import multihost_utils
      if main:
        load_data(c0, folders[0].path, masks)
      multihost_utils.sync_global_devices("encdec_jax:data prepared")
    trn, test = load_data(c0, folders[0].path if main else None, masks)
    _share_data_report(folders)
    prog = _program(cfgs)
    if main:
      print(prog.describe(), flush=True)
    state = prog.init(warm) if start == 0 else prog.restore([f.checkpoints for f in folders], start)
    for f, w in zip(folders, warm):  # the runs have started with these configs: only now are they recorded
      f.begin(start)
      if start == 0 and w is not None:
        f.write_init_from(w.record)
        if main:
          print(f"{f.name}: {warm_start.describe(w)}", flush=True)
    judges = judge_cache.for_config(c0, trn, test)
    probe = probes.for_run(prog.model, trn, test, c0.data.identities, judges)
    loop = _Loop(prog, folders, trn, test, judges, probe, progress)
    with preemption.stop_signals() as stop:
      state = loop.run(state, prog.batches(trn, start), start, stop)
    for f in folders:
      f.checkpoints.close()
    results = []
    for i, f in enumerate(folders):
      if i in loop.failed:
        f.mark_nonfinite_stop(loop.failed[i])
        results.append(NonFiniteError(loop.failed[i]))
        continue
      step = int(np.ravel(jax.device_get(state.step))[i])
      samples: dict = {}
      final = {"step": step, **loop.evaluate(state, i, step, samples)}
      bad = int(prog.nonfinite(state)[0][i])
      if bad:
        final["train/nonfinite_steps"] = bad
      failure = unfinished(final, f.path)
      if failure:  # not a result: no eval.json, so a sweep reports it failed, never finished
        f.mark_nonfinite_stop(failure)
        results.append(NonFiniteError(failure))
        continue
      f.write_eval(final, samples)
      results.append(final)
    return results
  finally:
    for f in folders:
      f.close()


MAX_SKIPPED = 0.5  # train.nonfinite='skip': a run that skipped more than this share of its steps failed


def unfinished(final: dict, workdir: str) -> str | None:
  """Why a run's final scalars are not a result, or None: it skipped most of its steps as
  non-finite (train.nonfinite='skip' kept going on a diverged run), or its evaluation is not
  finite."""
  step, bad = final["step"], final.get("train/nonfinite_steps", 0)
  if step and bad > MAX_SKIPPED * step:
    return (f"{bad} of {step} steps were non-finite and skipped (train.nonfinite='skip'; more than "
            f"{MAX_SKIPPED:.0%} is a failed run, not a finished one): its parameters barely trained. "
            f"Train again in a new --workdir (not {workdir}) with a lower config.train.lr.")
  nan = sorted(k for k, v in final.items() if isinstance(v, float) and not np.isfinite(v))
  if nan:
    return (f"the evaluation at step {step} is not finite ({', '.join(nan[:4])}"
            f"{', ...' if len(nan) > 4 else ''}): the parameters in {workdir} are not usable. "
            f"Train again in a new --workdir with a lower config.train.lr.")
  return None


def _share_data_report(folders) -> None:
  """Image folders: every member's workdir gets the data report that load_data wrote into the
  first one (swaps name their target by the identity folders it lists)."""
  src = os.path.join(folders[0].path, DATA_REPORT)
  if not folders[0].main or not os.path.exists(src):
    return
  for f in folders[1:]:
    shutil.copyfile(src, os.path.join(f.path, DATA_REPORT))


def nonfinite_message(first: int, workdir: str, terms: dict | None = None,
                      last_saved: int | None = None) -> str:
  """The one line a run stopped on a NaN/Inf at 0-based step `first` ends with; `last_saved`: its
  latest checkpoint's step, None when it has none."""
  shown = "" if not terms else ": " + ", ".join(
      f"{k}={float(v):.4g}" for k, v in sorted(terms.items()) if k != "train/nonfinite_steps")
  kept = (f"The last checkpoint in {workdir}/checkpoints (step {last_saved}) is untouched. Resume"
          if last_saved is not None else
          "No checkpoint was saved before it, so the run starts again from step 0. Rerun")
  return (f"non-finite loss or gradient at step {first + 1} (its update was not applied){shown}. "
          f"{kept} with the same --workdir and a lower config.train.lr, or "
          f"config.train.nonfinite='skip' to skip such steps.")


class _Loop:
  """Steps from `start` to train.steps; every log_every a metrics row (read one step late, so the
  loop never waits on the device), every preview_every a preview, every eval.every an
  evaluation, every checkpoint_every a checkpoint; SIGTERM/SIGINT saves and stops. In 'stop'
  mode a member whose step went non-finite is failed (before anything is written after it) and
  the others go on; the loop ends when none is left."""

  def __init__(self, prog, folders, trn, test, judges, probe, progress):
    self.prog, self.folders, self.test, self.judges, self.probe = prog, folders, test, judges, probe
    self.trn = trn
    self.references: dict = {}  # what every evaluation of every member is measured against
    self.cfg = prog.cfg
    self.progress = progress and folders[0].main
    self.failed: dict[int, str] = {}
    self.stop_mode = self.cfg.train.nonfinite == "stop"
    self.shifts: dict[int, tuple] = {}  # member -> (step, its colour shifts there)
    self.codes: dict[int, tuple] = {}  # member -> (step, its code statistics there)
    self.encode = codematch.make_encode(prog.model) if self.cfg.eval.code_match != "none" else None

  def alive(self):
    return [i for i in range(self.prog.m) if i not in self.failed]

  def colour_shifts(self, params, i: int, step: int):
    """Member i's colour shifts at `step` (encdec_jax/calibration.py) where config.eval.tone asks
    for them; computed once per member and step (a preview and an evaluation of one step share them)."""
    if self.cfg.eval.tone == "none":
      return None
    if self.shifts.get(i, (None,))[0] != step:
      self.shifts[i] = (step, calibration.calibrate_params(
          params, self.prog.decode_all, self.trn, self.cfg.data.identities,
          code=self.code_stats(params, i, step), face_type=self.cfg.data.face_type))
    return self.shifts[i][1]

  def code_stats(self, params, i: int, step: int):
    """Member i's code statistics at `step` (encdec_jax/codematch.py) where config.eval.code_match
    asks for them; computed once per member and step."""
    if self.encode is None:
      return None
    if self.codes.get(i, (None,))[0] != step:
      self.codes[i] = (step, codematch.code_stats(params, self.encode, self.trn, self.cfg.data.identities))
    return self.codes[i][1]

  def evaluate(self, state, i: int, step: int, samples: dict | None = None) -> dict:
    params = self.prog.member_params(state, i)
    shifts = self.colour_shifts(params, i, step)
    if shifts is not None:  # swaps of this checkpoint (experiments.swap, the sweep's grid) reuse them
      self.folders[i].write_tone(step, shifts)
    return eval_lib.evaluate(params, self.prog.decode_all, self.test, self.cfg.data.identities,
                             judges=self.judges, probes=self.probe, shifts=shifts, samples=samples,
                             face_type=self.cfg.data.face_type, ideal=own_crops_fn(self.cfg),
                             references=self.references, code=self.code_stats(params, i, step))

  def fail(self, state, i: int) -> None:
    """Member i stopped on a NaN/Inf: its first bad step's loss terms, recomputed from the state
    it started from (exact: later updates were dropped, the batch is a function of (seed, step))."""
    first = int(self.prog.nonfinite(state)[1][i])
    terms = self.prog.loss_terms_at(state, i, first)
    self.failed[i] = nonfinite_message(first, self.folders[i].path, terms,
                                       self.folders[i].checkpoints.latest_step())

  def check_nonfinite(self, state) -> None:
    if self.stop_mode:
      counts = self.prog.nonfinite(state)[0]
      for i in self.alive():
        if counts[i]:
          self.fail(state, i)

  def run(self, state, batches, start: int, stop):
    from tqdm.auto import tqdm
    prog, tc, m = self.prog, self.cfg.train, self.prog.m
    n_img = tc.batch_size * self.cfg.data.identities * m
    self.check_nonfinite(state)  # resumed from a state that had stopped
    pending = None  # (step, metrics on device): read one step later, so the loop never waits
    t_last, step_last = time.perf_counter(), start
    desc = self.folders[0].name if m == 1 else f"{m} members"
    bar = tqdm(total=tc.steps, initial=start, disable=not self.progress, desc=desc, unit="step",
               dynamic_ncols=True)

    def flush(pend):
      nonlocal t_last, step_last
      step, metrics = pend
      rows = prog.rows(jax.device_get(metrics))
      now = time.perf_counter()
      ips = (step - step_last) * n_img / max(now - t_last, 1e-9)
      t_last, step_last = now, step
      for i in self.alive():
        if self.stop_mode and rows[i]["train/nonfinite_steps"]:
          self.fail(state, i)
          continue
        self.folders[i].log(step, {**rows[i], "train/img_per_s": ips / m})
      bar.set_postfix(loss=f"{float(np.mean([r['train/loss'] for r in rows])):.4f}", img_s=f"{ips:.1f}")

    try:
      for step in range(start, tc.steps):
        if not self.alive():
          break
        state, metrics = prog.step(state, next(batches))
        done = step + 1
        if pending is not None:
          flush(pending)
          pending = None
        if done % tc.log_every == 0 or done == tc.steps:
          pending = (done, metrics)
        preempt = preemption.preemption_requested(stop, done)
        saving = done % tc.checkpoint_every == 0 or done == tc.steps or preempt
        preview = done % tc.preview_every == 0 or done == tc.steps
        if saving or preview:
          self.check_nonfinite(state)  # before anything is written
        if preview:
          for i in self.alive():
            params = prog.member_params(state, i)
            self.folders[i].preview(done, preview_grid(
                params, prog.decode_all, self.test, self.cfg.data.identities,
                shifts=self.colour_shifts(params, i, done), face_type=self.cfg.data.face_type,
                code=self.code_stats(params, i, done)))
        if self.cfg.eval.every and done % self.cfg.eval.every == 0 and done != tc.steps:
          for i in self.alive():
            self.folders[i].log(done, self.evaluate(state, i, done))
        if saving:
          for i in self.alive():
            self.folders[i].checkpoints.save(done, prog.member_state(state, i), {"step": done})
        bar.update(1)
        if preempt:
          if pending is not None:
            flush(pending)
          raise Preempted(done, self.folders[0].path, stop["signum"])
      if pending is not None:
        flush(pending)
    finally:
      bar.close()
    return state
