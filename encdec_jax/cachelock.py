"""An OS lock around preparing a cache that several processes share (a dataset, the judges)."""
from __future__ import annotations

import contextlib
import fcntl
import os


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
