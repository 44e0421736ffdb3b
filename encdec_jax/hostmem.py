"""Host memory allocation for XLA:CPU.

XLA:CPU allocates and frees its step's buffers through malloc every step. With glibc's defaults a
buffer above the mmap threshold (128 KiB at first, adapting up to 32 MiB) is mmapped and unmapped
each time, so every step page-faults its buffers in again: a small-model run spent 14.5 of its 61 s
of user time in the kernel with 6.5 million page faults (BENCHMARKS.md, "Host memory"). Raising
the mmap and trim thresholds keeps freed buffers in the heap for the next step.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
THRESHOLD = 1 << 30


def tune_malloc() -> bool:
  """Raises glibc's mmap and trim thresholds for this process (Linux only; ENCDEC_TUNE_MALLOC=0
  leaves malloc alone). Returns whether both were set. Called by the entry points."""
  if os.environ.get("ENCDEC_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) & bool(libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
  except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
    return False
