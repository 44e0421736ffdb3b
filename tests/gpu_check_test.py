"""experiments.gpu_check --dry: every part of the GPU check runs on a CPU with tiny settings, so the
command cannot rot between uses on a GPU; and a part past its budget is cut and said to be."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ["devices", "bench fp32 batch 16", "bench bf16 batch 256", "members", "sweep", "recipe"]


def _rows(text: str) -> dict[str, list[str]]:
  rows = [ln.strip().strip("|").split("|") for ln in text.splitlines() if ln.startswith("| ")][1:]
  return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def test_gpu_check_dry_runs_every_part_and_writes_its_table(tmp_path, tiny_config):
  from encdec_jax import assemble
  from encdec_jax.data import loading
  data = tmp_path / "data"
  data.mkdir()
  loading.export_arrays(assemble.checked_config(tiny_config()), str(data / "small.npz"))
  shutil.copy(data / "small.npz", data / "full.npz")  # dry: both parts train the tiny model
  out = tmp_path / "gpu_check.md"
  cmd = [sys.executable, "-m", "experiments.gpu_check", "--dry", f"--data={data}", f"--out={out}",
         f"--workdir={tmp_path / 'work'}"]
  r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
  rows = _rows(out.read_text())
  assert list(rows) == PARTS, rows
  assert all(e == "done" for _, e in rows.values()), rows
  assert "the train step ran on cpu (no accelerator)" in rows["devices"][0]
  assert rows["bench fp32 batch 16"][0].startswith("ours ") and "fraction of the matmul ceiling" in rows["bench fp32 batch 16"][0]
  bench = (tmp_path / "work" / "bench_fp32_batch_16.log").read_text()  # experiments.bench, whole
  assert "FLOPs/step: XLA cost analysis" in bench and "augment_on=device: host part (uint8 gather + draws)" in bench
  summary = [ln for ln in bench.splitlines() if ln.startswith("bench: ours=")]
  assert len(summary) == 1 and "pytorch=nan" in summary[0] and "the ceiling is the larger (jax," in bench
  assert "2 members in one program:" in rows["members"][0] and "one run's wall time per step" in rows["members"][0]
  for part in ("sweep", "recipe"):  # evaluations at steps 2 and 4, as a curve
    assert "step 2: attr_mae" in rows[part][0] and "step 4: attr_mae" in rows[part][0], rows[part]
  assert (tmp_path / "work" / "bench_bf16_batch_256.log").read_text() == bench  # dry: one command, run once


def test_a_part_past_its_budget_is_stopped_kept_and_said_to_be_cut(tmp_path, monkeypatch):
  """run_part stops a command at its budget with the given signal and keeps what it printed; the
  table names every part so stopped as cut at its budget, and is still written."""
  from experiments import gpu_check
  script = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('saved', flush=True), sys.exit(0)))\n"
            "print('started', flush=True)\ntime.sleep(60)\n")
  out, cut, rc = gpu_check.run_part([sys.executable, "-c", script], 3.0, str(tmp_path / "a.log"))
  assert cut and rc == 0 and out.split() == ["started", "saved"], (out, rc)
  assert (tmp_path / "a.log").read_text() == out
  out, cut, rc = gpu_check.run_part([sys.executable, "-c", script], 3.0, str(tmp_path / "b.log"),
                                    stop=gpu_check.signal.SIGKILL)
  assert cut and rc == -9 and out.split() == ["started"], (out, rc)
  out, cut, rc = gpu_check.run_part([sys.executable, "-c", "print('quick')"], 30.0, str(tmp_path / "c.log"))
  assert not cut and rc == 0 and out == "quick\n"
  # Every part cut: the devices row is the in-process one, every other says so with its budget.
  monkeypatch.setattr(gpu_check, "devices_row", lambda: "jax, cpu")
  monkeypatch.setattr(gpu_check, "run_part", lambda cmd, budget, log, stop=None: ("", True, -15))
  rows = gpu_check.check(str(tmp_path), dry=True, work=str(tmp_path / "work"), scale=0.5)
  assert [r[0] for r in rows] == PARTS
  assert rows[0][2] == "done"
  for part, _, ended in rows[1:]:
    assert ended == f"cut at its budget ({gpu_check.DRY_BUDGETS[part] * 0.5:.0f} s)", (part, ended)
  assert _rows(gpu_check.table(rows)).keys() == set(PARTS)


def test_gpu_check_without_its_data_says_how_to_make_it(tmp_path):
  r = subprocess.run([sys.executable, "-m", "experiments.gpu_check", f"--data={tmp_path}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "must hold small.npz and full.npz" in r.stderr and "--export=DIR" in r.stderr
