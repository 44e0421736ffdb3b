import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# `make bench`'s own command (tiny, no peer) runs in tests/gpu_check_test.py, which checks its
# output line by line; the benchmark itself is run by `make bench`, never timed here.


def test_cpu_ceiling_is_the_larger_measured_matmul_rate():
  from experiments.flops import cpu_ceiling
  assert cpu_ceiling(336.0, 190.0) == (336.0, "jax")  # a step at 288 GFLOP/s: 0.86, not 1.52
  assert cpu_ceiling(120.0, 164.0) == (164.0, "pytorch")
  assert cpu_ceiling(132.0, None) == (132.0, "jax")


def test_bench_archs_table_smoke():
  r = subprocess.run([sys.executable, "-m", "experiments.bench", "--variant=tiny", "--steps=1",
                      "--warmup=1", "--archs=original,liae"],
                     cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| original ") or ln.startswith("| liae ")]
  assert len(rows) == 2 and rows[0].rstrip().endswith("| 1.00 |"), r.stdout
  cells = lambda row: [c.strip() for c in row.strip().strip("|").split("|")]
  gflops = [float(cells(row)[7]) for row in rows]  # GFLOP/s; the last column is its ratio to original's
  assert float(cells(rows[1])[8]) == pytest.approx(gflops[1] / gflops[0], abs=0.01 + 0.02 * gflops[1] / gflops[0])


def test_bench_profile_prints_per_kind_and_per_layer_tables():
  r = subprocess.run([sys.executable, "-m", "experiments.bench", "--variant=tiny", "--steps=1",
                      "--warmup=1", "--profile"],
                     cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "| phase | kind | ms/step |" in r.stdout and "| layer | ms/step |" in r.stdout, r.stdout
  assert "| forward | matmul |" in r.stdout and "encoder/" in r.stdout, r.stdout
  assert "\nmatmuls: " in r.stdout and "untraced (incl." in r.stdout, r.stdout
