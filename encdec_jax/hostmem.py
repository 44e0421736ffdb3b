"""Host memory allocation for XLA:CPU.

XLA:CPU allocates and frees its step's buffers through malloc every step. With glibc's defaults a
buffer above the mmap threshold (128 KiB at first, adapting up to 32 MiB) is mmapped and unmapped
each time, so every step page-faults its buffers in again: a small-model run spent 14.5 of its 61 s
of user time in the kernel with 6.5 million page faults (BENCHMARKS.md, "Host memory"). Raising
the mmap and trim thresholds keeps freed buffers in the heap for the next step.

The thresholds govern the main arena only. XLA runs a step on its own threads, and glibc gives
each thread an arena of 64 MiB heaps: a buffer that does not fit one (a group of members' step
buffers) is mmapped whatever the threshold, and page-faulted in again every step. The default
sweep's 4-member group still took 9.7 million minor faults and 20.5 s of system time in 150
steps; with one arena (M_ARENA_MAX=1), 0.62 million and 4.2 s (BENCHMARKS.md, "Host memory").
So all threads share the main arena: XLA mallocs few, large buffers per step, so the lock they
share costs nothing measurable.

Trimming is off. Once a step's freed buffers leave more than the trim threshold free at the top of
the heap, glibc gives it back to the OS after every step, and the next step faults it in again:
the default sweep's eight members with a swap term (a 565 MB temporary buffer, 302 MB of outputs)
crossed the 1 GiB threshold, and 150 of their steps took 11.2 million minor faults and 32 s of
system time; without trimming, 1.07 million and 4.2 s (BENCHMARKS.md, "Host memory"). A training
process keeps its peak heap anyway.
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
