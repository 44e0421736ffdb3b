"""Stopping cleanly: SIGTERM/SIGINT (and, on multi-host runs, JAX's preemption service) ask the
train loop to finish its step, save and exit; `Preempted` carries the step to resume from."""
from __future__ import annotations

import contextlib
import signal
import threading

import jax


class Preempted(Exception):
  """SIGTERM/SIGINT arrived; the step in progress finished and a checkpoint was saved."""

  def __init__(self, step: int, workdir: str, signum: int):
    self.step, self.workdir, self.signum = step, workdir, signum
    super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved "
                     f"in {workdir}/checkpoints. Run the same command again to resume from step {step}.")


class Stopped(BaseException):
  """SIGTERM/SIGINT outside the training steps (start-up, the final evaluation, a report, a
  swap grid): the command stops where it is. A BaseException, like KeyboardInterrupt, so that no
  `except Exception` on the way (a report that goes on without its grid) swallows it."""

  def __init__(self, signum: int):
    self.signum = signum
    super().__init__(f"stopped by {signal.Signals(signum).name}; the checkpoints and results "
                     f"written so far are kept. Run the same command again to finish.")


@contextlib.contextmanager
def stop_raises():
  """For a whole command: SIGTERM and SIGINT raise Stopped in the main thread (while the
  training loop steps, its stop_signals takes over and restores this on leaving). Outside the
  main thread nothing is installed."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handler(signum, frame):
    raise Stopped(signum)

  old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield
  finally:
    for sig, h in old.items():
      signal.signal(sig, h)


@contextlib.contextmanager
def stop_signals():
  """While training: SIGTERM/SIGINT set a flag the loop reads after each step (a second SIGINT
  interrupts at once). Outside the main thread (e.g. a test runner's worker) nothing is installed."""
  stop = {"signum": 0}
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return

  def handler(signum, frame):
    if stop["signum"] == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    stop["signum"] = signum

  old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for sig, h in old.items():
      signal.signal(sig, h)


def preemption_requested(stop: dict, step: int) -> bool:
  """This process got a signal, or (multi-host, e.g. a TPU maintenance event) JAX's preemption
  service says every host must stop at this step: then all hosts save the same step."""
  if stop["signum"]:
    return True
  if jax.process_count() > 1:
    try:
      from jax.experimental import multihost_utils
      if multihost_utils.reached_preemption_sync_point(step):
        stop["signum"] = signal.SIGTERM
        return True
    except Exception:  # noqa: BLE001 - no preemption service (not started by jax.distributed)
      return False
  return False
