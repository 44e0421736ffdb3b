"""A GPU box checked in one command: the devices, the step's speed against the PyTorch peer, K
members against one run, and the recipe at scale, each part within its own time budget.

  # where TensorFlow is installed (it prepares the synthetic data), once:
  python -m experiments.gpu_check --export=data/            # writes data/small.npz, data/full.npz
  # on the GPU box (no TensorFlow needed: the arrays path):
  python -m experiments.gpu_check --data=data/ --torch_python=python3
  # on a CPU, every part with tiny settings (the test suite runs this):
  python -m experiments.gpu_check --dry --data=data/

Prints one markdown table and writes it to --out (default gpu_check.md): one row per part, what
it measured, and whether the part was cut at its budget. Parts:
  devices   jax version, the devices, and whether the train step runs on the accelerator
  bench     the full-size Original at fp32 batch 16 and bf16 batch 256 against the GPU peer
            (experiments/peers/torch_original_gpu.py): img/s, ratio, MFU against the card's
            measured bf16 matmul rate (experiments.bench)
  members   K = 8 full-size members in one program against one run: wall time per step of each
  sweep     the default sweep at 10x its steps, its evaluations as a curve (mean over runs)
  recipe    the full-size 64-px recipe, cut off by time, its evaluations as a curve
A part that outlives its budget is stopped with SIGTERM (a training saves its step and exits) or,
for a benchmark, killed; the table says so and shows what it had measured by then.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from absl import flags

from experiments import _cli

_DATA = flags.DEFINE_string("data", None, "folder with small.npz (the default sweep's data) and "
                            "full.npz (the full-size recipe's), written by --export")
_EXPORT = flags.DEFINE_string("export", None, "write small.npz and full.npz into this folder and exit "
                              "(needs TensorFlow)")
_DRY = flags.DEFINE_bool("dry", False, "every part with tiny settings, in about a minute on a CPU")
_TORCH = flags.DEFINE_string("torch_python", "", "python with torch for the GPU peer ('' skips it)")
_OUT = flags.DEFINE_string("out", "gpu_check.md", "where the table is written")
_WORKDIR = flags.DEFINE_string("workdir", "", "where the sweep and the recipe train ('' : a temporary folder)")
_SCALE = flags.DEFINE_float("budget_scale", 1.0, "multiplies every part's time budget")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Seconds per part on a GPU: 9 minutes in all.
BUDGETS = {"devices": 20, "bench fp32 batch 16": 75, "bench bf16 batch 256": 75, "members": 90,
           "sweep": 150, "recipe": 130}
DRY_BUDGETS = {"devices": 60, "bench fp32 batch 16": 120, "bench bf16 batch 256": 120,
               "members": 120, "sweep": 180, "recipe": 120}
EXPORTS = {"small": "experiments/configs/original.py:small", "full": "experiments/configs/original.py"}
CURVE = ("attr_mae", "expr_mae", "id_transfer", "recon_attr_mae")


def export(folder: str, exports: dict = EXPORTS) -> None:
  """small.npz and full.npz (the default sweep's and the full-size recipe's data) in `folder`."""
  from encdec_jax import assemble
  from encdec_jax.data.loading import export_arrays
  from encdec_jax.sweep import load_config
  os.makedirs(folder, exist_ok=True)
  for name, arg in exports.items():
    cfg = assemble.checked_config(load_config(os.path.join(ROOT, arg)))
    meta = export_arrays(cfg, os.path.join(folder, f"{name}.npz"))
    print(f"{os.path.join(folder, name + '.npz')}: {meta['dataset_key']}")


def run_part(cmd: list[str], budget: float, log: str, stop=signal.SIGTERM) -> tuple[str, bool, int]:
  """(stdout and stderr, whether it was cut at `budget`, return code) of a subprocess, its output
  also kept in the file `log`; a part past its budget gets `stop`, then 60 s to save and exit,
  then SIGKILL."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  with open(log, "w+") as out:
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    cut = False
    try:
      p.wait(timeout=budget)
    except subprocess.TimeoutExpired:
      cut = True
      p.send_signal(stop)
      try:
        p.wait(timeout=60)
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    out.seek(0)
    return out.read(), cut, p.returncode


def devices_row() -> str:
  import jax
  import numpy as np
  from encdec_jax import assemble, config as config_lib
  from encdec_jax.program import Trainer
  from experiments.configs import original
  cfg = assemble.checked_config(config_lib.override(original.get_config("tiny"), {"data.name": "arrays"}))
  tr = Trainer(cfg)
  state = tr.init()
  host = {k: np.zeros((cfg.data.identities, cfg.train.batch_size, 16, 16, 3), np.float32) for k in tr.batch_keys}
  state, m = tr.step_fn(state, tr.device_batch(host))
  where = sorted({d.platform for d in jax.tree.leaves(state)[0].devices()})
  kinds = sorted({d.device_kind for d in jax.devices()})
  on_accel = where != ["cpu"]
  return (f"jax {jax.__version__}, {jax.device_count()} x {', '.join(kinds)} ({jax.default_backend()}); "
          f"the train step ran on {', '.join(where)}" + ("" if on_accel else " (no accelerator)"))


def bench_cmd(dry: bool, sets: list[str], extra: list[str], torch_python: str = "") -> list[str]:
  """The experiments.bench command of a bench part: `sets` on the full-size model, or with `dry`
  the tiny variant as it is (one command for both bench parts, run once)."""
  cmd = [sys.executable, "-m", "experiments.bench", *extra]
  if dry:
    return cmd + ["--variant=tiny", "--steps=1", "--warmup=1", "--rounds=1", "--torch_python=",
                  "--ceiling_n=512"]
  cmd += ["--rounds=2", "--warmup=3", "--steps=10", "--set=model.conv_impl=xla", *[f"--set={s}" for s in sets]]
  if torch_python:
    cmd += [f"--torch_python={torch_python}", "--peer=experiments/peers/torch_original_gpu.py"]
  else:
    cmd += ["--torch_python="]
  return cmd


def bench_row(out: str) -> str:
  """The bench's summary: img/s of ours and the peer, the ratio, and MFU or the CPU ceiling."""
  m = re.search(r"bench: ours=(\S+) pytorch=(\S+) ratio=(\S+) ceiling=(\S+)", out)
  if not m:
    return "no result"
  mfu = re.search(r"MFU against the bf16 rate: (\S+)", out)
  return (f"ours {m[1]} img/s, PyTorch {m[2]} img/s, ratio {m[3]}, "
          + (f"MFU {mfu[1]}" if mfu else f"fraction of the matmul ceiling {m[4]}"))


def members_row(out: str, k: int) -> str:
  m = re.search(r"bench-members: K=\d+ aggregate (\S+) img/s, one run (\S+) img/s; ratio (\S+)", out)
  if not m:
    return "no result"
  ratio = float(m[3])
  return (f"{k} members in one program: {k / ratio:.2f}x one run's wall time per step "
          f"(aggregate {m[1]} img/s against one run's {m[2]}; goal: at most 2x)")


def curve_row(workdirs: list[str]) -> str:
  """The evaluations of these runs as a curve: per evaluated step, the mean over runs of CURVE."""
  from encdec_jax import tracking
  from encdec_jax.workdir import METRICS
  by_step: dict[int, dict[str, list]] = {}
  for w in workdirs:
    for name in CURVE:
      for step, v in tracking.eval_curve(os.path.join(w, METRICS), f"eval/{name}"):
        by_step.setdefault(step, {}).setdefault(name, []).append(v)
  if not by_step:
    return "no evaluation reached"
  pts = []
  for step in sorted(by_step):
    vals = ", ".join(f"{n} {sum(v) / len(v):.3f}" for n, v in by_step[step].items())
    pts.append(f"step {step}: {vals}")
  return "; ".join(pts)


def sweep_yaml(dry: bool, folder: str) -> str:
  """The default sweep's stage 2 at 10x its steps, from scratch (its stage 1 is not in this part's
  budget; dry: a two-run tiny sweep)."""
  import yaml
  spec = yaml.safe_load(open(os.path.join(ROOT, "experiments", "sweeps", "default.yaml")))
  p = spec["parameters"]
  p["config.train.init_from"] = {"value": ""}
  if dry:
    spec["command"] = [c.replace("original.py:small", "original.py:tiny") for c in spec["command"]]
    p["config.model.bottleneck"] = {"values": [8, 16]}
    p["config.loss"] = {"value": "mae:1.0"}
    p["config.seed"] = {"value": 0}
    p["config.train.steps"], p["config.eval.every"] = {"value": 4}, {"value": 2}
    p["config.train.batch_size"] = {"value": 4}
  else:
    steps = 10 * p["config.train.steps"]["value"]
    p["config.train.steps"], p["config.eval.every"] = {"value": steps}, {"value": steps // 10}
  p["config.train.checkpoint_every"] = {"value": p["config.eval.every"]["value"]}
  path = os.path.join(folder, "sweep.yaml")
  with open(path, "w") as f:
    yaml.safe_dump(spec, f)
  return path


def check(data: str, dry: bool, work: str, scale: float = 1.0, torch_python: str = "") -> list[tuple[str, str, str]]:
  """[(part, result, how it ended)] for every part; `scale` multiplies every part's time budget,
  `torch_python` runs the PyTorch peer in the benches ('' skips it)."""
  budgets = {k: v * scale for k, v in (DRY_BUDGETS if dry else BUDGETS).items()}
  os.makedirs(work, exist_ok=True)
  log = lambda part: os.path.join(work, part.replace(" ", "_") + ".log")  # noqa: E731
  rows = []

  def ended(cut, rc, budget):
    return f"cut at its budget ({budget:.0f} s)" if cut else ("done" if rc == 0 else f"failed (exit {rc})")

  t = time.time()
  try:
    rows.append(("devices", devices_row(), "done"))
  except Exception as e:  # noqa: BLE001 - the table says what broke, the other parts still run
    rows.append(("devices", f"no result: {str(e).splitlines()[0][:200]}", "failed"))
  print(f"devices: {time.time() - t:.0f} s", flush=True)
  ran = {}  # command -> its (output, cut, exit status): --dry gives both benches the same command
  for part, sets in (("bench fp32 batch 16", ["model.dtype=float32", "train.batch_size=16"]),
                     ("bench bf16 batch 256", ["model.dtype=bfloat16", "train.batch_size=256"])):
    cmd = tuple(bench_cmd(dry, sets, [], torch_python))
    if cmd in ran:
      with open(log(part), "w") as f:
        f.write(ran[cmd][0])
    else:
      ran[cmd] = run_part(list(cmd), budgets[part], log(part), stop=signal.SIGKILL)
    out, cut, rc = ran[cmd]
    rows.append((part, bench_row(out), ended(cut, rc, budgets[part])))
    print(f"{part}: {rows[-1][1]}", flush=True)
  k = 2 if dry else 8
  sets = [] if dry else ["model.dtype=bfloat16"]
  out, cut, rc = run_part(bench_cmd(dry, sets, [f"--members={k}"], torch_python), budgets["members"], log("members"),
                          stop=signal.SIGKILL)
  rows.append(("members", members_row(out, k), ended(cut, rc, budgets["members"])))
  print(f"members: {rows[-1][1]}", flush=True)
  small, full = os.path.join(data, "small.npz"), os.path.join(data, "full.npz")
  sweep_dir = os.path.join(work, "sweep")
  out, cut, rc = run_part([sys.executable, "-m", "experiments.sweep", f"--sweep={sweep_yaml(dry, work)}",
                           f"--workdir={sweep_dir}", "--set=data.name=arrays", f"--set=data.root={small}",
                           "--set=wandb.mode=disabled"], budgets["sweep"], log("sweep"))
  runs = [os.path.join(sweep_dir, d) for d in sorted(os.listdir(sweep_dir))
          if os.path.isdir(os.path.join(sweep_dir, d))] if os.path.isdir(sweep_dir) else []
  rows.append(("sweep", curve_row(runs) if runs else "no run started: " + out.strip()[-300:],
               ended(cut, rc, budgets["sweep"])))
  print(f"sweep: {rows[-1][1]}", flush=True)
  recipe = os.path.join(work, "recipe")
  cmd = [sys.executable, "-m", "experiments.train", f"--workdir={recipe}"]
  if dry:
    cmd += ["--config=experiments/configs/original.py:tiny", "--config.train.steps=4",
            "--config.eval.every=2", "--config.train.checkpoint_every=2"]
  else:
    cmd += ["--config=experiments/configs/original.py", "--config.train.lr=2e-4",
            "--config.train.steps=50000", "--config.eval.every=5000", "--config.train.checkpoint_every=5000"]
  cmd += ["--config.data.name=arrays", f"--config.data.root={full}", "--config.wandb.mode=disabled"]
  out, cut, rc = run_part(cmd, budgets["recipe"], log("recipe"))
  rows.append(("recipe", curve_row([recipe]) if os.path.isdir(recipe) else "no run started: " + out.strip()[-300:],
               ended(cut, rc, budgets["recipe"])))
  print(f"recipe: {rows[-1][1]}", flush=True)
  return rows


def table(rows) -> str:
  lines = ["| part | result | ended |", "|---|---|---|"]
  lines += [f"| {p} | {r.replace('|', '/')} | {e} |" for p, r, e in rows]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  _cli.start()
  if _EXPORT.value:
    export(_EXPORT.value)
    return
  if not _DATA.value or not all(os.path.isfile(os.path.join(_DATA.value, f"{n}.npz")) for n in EXPORTS):
    sys.exit(f"error: --data={_DATA.value!r} must hold small.npz and full.npz: write them with "
             f"python -m experiments.gpu_check --export=DIR where TensorFlow is installed")
  work = _WORKDIR.value or tempfile.mkdtemp(prefix="gpu_check_")
  rows = check(_DATA.value, _DRY.value, work, _SCALE.value, _TORCH.value)
  text = (f"# gpu_check{' (dry: tiny settings)' if _DRY.value else ''}\n\n{table(rows)}")
  with open(_OUT.value, "w") as f:
    f.write(text)
  print("\n" + text + f"written to {_OUT.value}; runs and each part's output (<part>.log) in {work}")
  with open(os.path.join(work, "gpu_check.json"), "w") as f:
    json.dump(rows, f)


if __name__ == "__main__":
  _cli.run(main)
