"""glibc's malloc thresholds (encdec_jax/hostmem.py), read back from the allocator itself."""
import os
import subprocess
import sys

_PROBE = """
import ctypes, sys, threading
from encdec_jax import hostmem
tuned = hostmem.tune_malloc()
class Info(ctypes.Structure):  # glibc's struct mallinfo2
  _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                             "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
p = libc.malloc(64 << 20)  # a step buffer's size: mmapped by default, in the heap once tuned
print(tuned, libc.mallinfo2().hblkhd >= 64 << 20)
libc.free(ctypes.c_void_p(p))
seen = []
def step():  # as XLA's threads allocate: a thread arena's heaps hold 64 MiB at most
  q = libc.malloc(96 << 20)
  seen.append(libc.mallinfo2().hblkhd >= 96 << 20)
  libc.free(ctypes.c_void_p(q))
t = threading.Thread(target=step)
t.start(); t.join()
print(seen[0])
a, b = libc.malloc(600 << 20), libc.malloc(600 << 20)  # two big step buffers from the heap (untouched)
top = libc.mallinfo2().arena
libc.free(ctypes.c_void_p(b)); libc.free(ctypes.c_void_p(a))
print(libc.mallinfo2().arena >= top)  # freed, 1.2 GiB at the heap's top: kept, or trimmed
"""


def _probe(**env):
  r = subprocess.run([sys.executable, "-c", _PROBE], env=dict(os.environ, **env), capture_output=True,
                     text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert r.returncode == 0, r.stderr
  return r.stdout.split()


def test_tune_malloc_keeps_big_buffers_in_the_heap_and_can_be_turned_off():
  # tuned (Linux with glibc, as CI): neither the main thread's buffer nor another thread's mmapped
  # and the heap's top is not given back after a step frees its buffers
  assert _probe() == ["True", "False", "False", "True"]
  # glibc's default: both mmapped (and the 600 MiB buffers too, so nothing in the heap to trim)
  assert _probe(ENCDEC_TUNE_MALLOC="0")[:3] == ["False", "True", "True"]
