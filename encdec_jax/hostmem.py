"""Host memory allocation for XLA:CPU.

XLA:CPU allocates and frees its step's buffers through malloc every step. With glibc's defaults a
buffer above the mmap threshold (128 KiB at first, adapting up to 32 MiB) is mmapped and unmapped
each time, so every step page-faults its buffers in again. This module raises the mmap and trim
thresholds, so freed buffers stay in the heap for the next step; makes every thread share the
main arena (the thresholds govern it only, and a buffer larger than a thread arena's 64 MiB heap
is mmapped whatever the threshold); and turns trimming off (a heap whose top is freed after each
step would be given back to the OS and faulted in again by the next). A training process keeps
its peak heap anyway. The page-fault counts behind each setting: BENCHMARKS.md, "Host memory".
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
THRESHOLD = 1 << 30   # mmap threshold: a buffer below it comes from the heap
NO_TRIM = -1          # glibc's "never trim the heap" (mallopt(3))


def tune_malloc() -> bool:
  """Raises glibc's mmap threshold, turns heap trimming off and keeps every thread in the main arena, for this
  process (Linux only; ENCDEC_TUNE_MALLOC=0 leaves malloc alone). Returns whether all three were
  set. Called by the entry points, before JAX starts its threads (an arena already made stays)."""
  if os.environ.get("ENCDEC_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    return (bool(libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD))
            & bool(libc.mallopt(_M_TRIM_THRESHOLD, NO_TRIM)) & bool(libc.mallopt(_M_ARENA_MAX, 1)))
  except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
    return False
