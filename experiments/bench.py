"""Training speed against the PyTorch peer and the machine's matmul ceiling, in one run.

  make bench                                   # full-size Original, 64x64, batch 16 per identity
  python -m experiments.bench --variant=small --rounds=1 --torch_python=''   # ours only
  python -m experiments.bench --archs=original,lightweight,dfaker,iae,df,liae --steps=3  # table
  python -m experiments.bench --profile --steps=2   # where the step's time goes, per op and layer

Ours and the peer (experiments/peers/torch_original.py: same model, batch, resolution, MAE loss and
Adam) run alternately, `--rounds` times each; the ceiling is an fp32 4096^3 matrix product (the
method of experiments/peers/cpu_peak.py), measured in JAX and, when the peer's venv exists, in PyTorch.
Ends with: bench: ours=<img/s> pytorch=<img/s> ratio=<x> ceiling=<fraction>
"""
import os
import re
import resource
import statistics
import subprocess
import sys
import time

from absl import flags

from experiments import _cli

_VARIANT = flags.DEFINE_string("variant", "full", "variant of the config file (full, small, tiny)")
_ARCH = flags.DEFINE_string("arch", "original", "config file experiments/configs/<arch>.py")
_ARCHS = flags.DEFINE_list("archs", [], "time each of these architectures (ours only) and print a "
                           "table of achieved GFLOP/s, e.g. --archs=original,lightweight,dfaker,iae,df,liae")
_STEPS = flags.DEFINE_integer("steps", 5, "timed steps per round")
_WARMUP = flags.DEFINE_integer("warmup", 2, "untimed steps after compilation")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "alternations of ours and the peer")
_TORCH = flags.DEFINE_string("torch_python", "", "python of a venv with torch==2.13.0; '' skips the peer")
_PEER = flags.DEFINE_string("peer", os.path.join("experiments", "peers", "torch_original.py"),
                            "peer script (torch_original_gpu.py beside it for GPUs)")
_SET = flags.DEFINE_multi_string("set", [], "config override, e.g. model.conv_impl=xla")
_STEP_GFLOP = flags.DEFINE_float("step_gflop", 0.0, "on accelerators: the step's GFLOP (from the "
                                  "CPU cost analysis of the same config; see time_ours)")
_BREAKDOWN = flags.DEFINE_bool("breakdown", False, "only split the step's time into forward, "
                                "backward and optimizer phases (each phase jitted and timed alone)")
_PROFILE = flags.DEFINE_bool("profile", False, "only trace the step and print where its time goes, "
                              "per op kind and per layer (experiments/step_profile.py)")
_MEMBERS = flags.DEFINE_integer("members", 0, "only time K members (seeds 0..K-1) of the config "
                                "in one program against one run: aggregate img/s and the ratio")
_LOSSES = flags.DEFINE_bool("losses", False, "only time each loss (value and gradient, 32 x 64x64)")
_CEILING_N = flags.DEFINE_integer("ceiling_n", 4096, "on a CPU: the side of the fp32 matrix product "
                                  "that measures the matmul ceiling (smaller: a quicker, lower ceiling)")


def time_losses(batch=32, res=64, reps=5):
  """Median ms of value_and_grad of each registered loss, jitted."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from encdec_jax import losses
  a = jnp.asarray(np.random.default_rng(0).random((batch, res, res, 3), np.float32))
  b = jnp.asarray(np.random.default_rng(1).random((batch, res, res, 3), np.float32))
  for name in losses.LOSSES:
    f = jax.jit(jax.value_and_grad(lambda x, name=name: losses.LOSSES[name](x, b).sum()))
    jax.block_until_ready(f(a))
    ts = [_timed(lambda: jax.block_until_ready(f(a))) for _ in range(reps)]
    print(f"loss {name}: {1000 * statistics.median(ts):.1f} ms (value and gradient, {batch} x {res}x{res})")


def _config(arch=None):
  import importlib
  from encdec_jax import config as config_lib
  c = importlib.import_module(f"experiments.configs.{arch or _ARCH.value}").get_config(_VARIANT.value)
  # The peer trains with plain MAE on the whole image: time the same work, not the recipe's
  # SSIM + masked loss (--set loss=... or mask.enabled=True to time those).
  over = {"config.loss": "mae:1.0", "config.mask.enabled": False, **_cli.parse_set(_SET.value)}
  try:
    return config_lib.override(c, over)
  except config_lib.ConfigError as e:
    sys.exit(f"error: --set: {e}")


def jax_matmul_gflops(n=4096, reps=5, dtype="float32"):
  """Best-of-`reps` GFLOP/s of an n^3 matrix product on the default device (the method of
  experiments/peers/cpu_peak.py; on a GPU, n=8192 and bf16 give the card's usable matmul rate)."""
  import jax
  import jax.numpy as jnp
  a = jax.random.uniform(jax.random.key(0), (n, n)).astype(dtype)
  b = jax.random.uniform(jax.random.key(1), (n, n)).astype(dtype)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  best = min(_timed(lambda: f(a, b).block_until_ready()) for _ in range(reps))
  return 2 * n ** 3 / best / 1e9


def _timed(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def time_ours(cd):
  """-> dict of ms/step, img/s, GFLOP (XLA and analytic), compile s, for the configured model."""
  import jax
  import numpy as np
  from encdec_jax import assemble
  from encdec_jax.program import Trainer
  from experiments import flops as flops_lib
  cfg = assemble.checked_config(cd)
  t0 = time.perf_counter()
  tr = Trainer(cfg)
  state = tr.init()
  n, b, r = cfg.data.identities, cfg.train.batch_size, cfg.data.resolution
  rng = np.random.default_rng(0)
  host = {k: rng.random((n, b, r, r, 3), dtype=np.float32) for k in tr.batch_keys}
  batch = tr.device_batch(host)
  t1 = time.perf_counter()
  compiled = tr.step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t1
  flops = compiled.cost_analysis()["flops"]
  if jax.devices()[0].platform != "cpu":
    # XLA:GPU's cost analysis leaves out convolutions and GEMMs run as cuDNN/cuBLAS custom calls
    # (measured on an H200: 8 GFLOP counted of a 311 GFLOP step), so on accelerators the step's
    # FLOPs come from the CPU compile of the same config: pass them with --step_gflop, or, for
    # the Original, from the analytic count.
    flops = (_STEP_GFLOP.value * 1e9 if _STEP_GFLOP.value else
             3 * flops_lib.analytic_forward_flops(cfg.model) * n * b if cfg.model.arch == "original"
             else float("nan"))
  # Backward ~ 2x forward; padding taps counted as the configured conv form computes them.
  analytic = (3 * flops_lib.analytic_forward_flops(cfg.model) * n * b
              if cfg.model.arch == "original" else float("nan"))
  for _ in range(_WARMUP.value):
    state, _ = tr.step_fn(state, tr.device_batch(host))
  jax.block_until_ready(state)
  setup_s = time.perf_counter() - t0
  return {"cfg": cfg, "tr": tr, "state": state, "host": host, "flops": flops, "analytic": analytic,
          "compile_s": compile_s, "setup_s": setup_s, "hlo": compiled.as_text()}


def run_ours(o, steps):
  import jax
  tr, state = o["tr"], o["state"]
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, m = tr.step_fn(state, tr.device_batch(o["host"]))
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  o["state"] = state
  return times


def run_peer(b, r, steps, bf16=False):
  env = dict(os.environ, PEER_BF16="1" if bf16 else "0")
  out = subprocess.run([_TORCH.value, _PEER.value, str(b), str(steps), str(r)], capture_output=True,
                       text=True, timeout=3600, env=env)
  if out.returncode != 0:
    raise RuntimeError(f"peer failed: {out.stderr[-2000:]}")
  m = re.search(r"(\d+) ms/step, ([\d.]+) img/s", out.stdout)
  return float(m.group(1)) / 1000, float(m.group(2)), out.stdout.strip()


def torch_matmul_gflops():
  peak = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "cpu_peak.py")
  out = subprocess.run([_TORCH.value, peak, "--fp32"], capture_output=True, text=True, timeout=600)
  m = re.search(r"fp32 matmul \S+: (\d+) GFLOP/s", out.stdout)
  return float(m.group(1)) if m else None


def pipeline_img_per_s(cfg, batches=10):
  """Augmentation alone (warp, flip, jitter) on rendered faces, img/s; no TF needed."""
  import numpy as np
  from encdec_jax.data import render as R
  from encdec_jax.data.pipeline import Augment, TrainSource
  n, r, b = cfg.data.identities, cfg.data.resolution, cfg.train.batch_size
  per = max(b, 64)
  imgs, masks, ids = [], [], []
  for i in range(n):
    t = R.identity_traits(0, i)
    for k in range(per):
      out = R.render(t, R.sample_factors(np.random.default_rng([i, k])), r)
      imgs.append(R.to_uint8(out.image))
      masks.append(R.to_uint8(out.mask))
      ids.append(i)
  aug = Augment.from_config(cfg.data)
  src = TrainSource(np.stack(imgs), np.stack(masks), np.array(ids), n, b, 0, aug)
  src.batch(0)
  dt = _timed(lambda: [src.batch(s) for s in range(batches)])
  return batches * n * b / dt, device_pipeline_img_per_s(src, aug, batches)


def device_pipeline_img_per_s(src, aug, batches):
  """data.augment_on='device': (host part alone: gather uint8 + draw parameters, img/s;
  the jitted augmentation on the default device, img/s, transfer included)."""
  import functools
  import jax
  from encdec_jax.data import device_augment
  imgs = src.batch_size * len(src.images)
  host_s = _timed(lambda: [src.raw_batch(s) for s in range(batches)])
  f = jax.jit(functools.partial(device_augment.augment_batch, a=aug))
  raws = [src.raw_batch(s) for s in range(batches)]
  jax.block_until_ready(f(raws[0]))
  dev_s = _timed(lambda: jax.block_until_ready([f(r) for r in raws]))
  return batches * imgs / host_s, batches * imgs / dev_s


def breakdown(cd, reps=3):
  """Median ms of: the forward loss alone; forward + backward (value_and_grad); the Adam update
  alone; the whole step. Backward = second - first; the rest = step - grad - update (fusion)."""
  import jax
  import numpy as np
  import optax
  from encdec_jax import assemble, losses, models
  from encdec_jax.program import Trainer
  cfg = assemble.checked_config(cd)
  tr = Trainer(cfg)
  state = tr.init()
  n, b, r = cfg.data.identities, cfg.train.batch_size, cfg.data.resolution
  rng = np.random.default_rng(0)
  batch = tr.device_batch({k: rng.random((n, b, r, r, 3), dtype=np.float32) for k in tr.batch_keys})

  def loss(p):
    y = models.split_output(tr.model.apply(p, batch["inputs"]))[0]
    return losses.combined_loss(losses.parse_loss_spec(cfg.loss), y.reshape((-1,) + y.shape[2:]),
                                batch["targets"].reshape((-1,) + y.shape[2:]))[0].mean()

  fwd = jax.jit(loss)
  grad = jax.jit(jax.grad(loss))
  g = grad(state.params)
  upd = jax.jit(lambda g, o, p: optax.apply_updates(p, tr.tx.update(g, o, p)[0]))
  timings = {}
  for name, fn in (("forward (loss)", lambda: fwd(state.params)),
                   ("forward + backward", lambda: grad(state.params)),
                   ("Adam update", lambda: upd(g, state.opt_state, state.params))):
    jax.block_until_ready(fn())
    timings[name] = statistics.median(_timed(lambda: jax.block_until_ready(fn())) for _ in range(reps))
  st = state
  st, m = tr.step_fn(st, batch)
  jax.block_until_ready(m)
  ts = []
  for _ in range(reps):
    t = time.perf_counter()
    st, m = tr.step_fn(st, batch)
    jax.block_until_ready(m)
    ts.append(time.perf_counter() - t)
  step = statistics.median(ts)
  f, fb, u = timings["forward (loss)"], timings["forward + backward"], timings["Adam update"]
  print(f"step {1000 * step:.0f} ms = forward {1000 * f:.0f} + backward {1000 * (fb - f):.0f} + "
        f"Adam {1000 * u:.0f} + rest {1000 * (step - fb - u):.0f} (each phase jitted alone, "
        f"median of {reps})")


def profile_step(cd):
  """Per-op time of the step from a profiler trace, grouped by kind and by layer."""
  import jax
  from experiments import step_profile
  o = time_ours(cd)
  tr, host = o["tr"], o["host"]

  def run():
    o["state"], m = tr.step_fn(o["state"], tr.device_batch(host))
    jax.block_until_ready(m)

  p = step_profile.profile(o["hlo"], run, steps=_STEPS.value)  # the jitted step's own program
  print(f"step {1000 * p.wall_s:.0f} ms (mean of {p.steps} traced steps); "
        f"{o['flops'] / 1e9:.0f} GFLOP/step = {o['flops'] / p.wall_s / 1e9:.0f} GFLOP/s\n")
  print(p.summary(), "\n")
  print(p.table("phase", "kind"), "\n")
  print(p.table("layer"), "\n")
  print(p.table("layer", "phase", "kind", top=25))


def bench_archs(archs):
  """One row per architecture: its config's full (or --variant) size, ours only."""
  import gc
  import jax
  rows = []
  print("| arch | resolution | batch | GFLOP/step | compile s | ms/step | img/s | GFLOP/s | vs original |")
  print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
  for arch in archs:
    o = time_ours(_config(arch))
    cfg = o["cfg"]
    ts = run_ours(o, _STEPS.value)
    med = statistics.median(ts)
    g = o["flops"] / med / 1e9
    rows.append((arch, g))
    base = dict(rows).get("original")
    r, b, n = cfg.data.resolution, cfg.train.batch_size, cfg.data.identities
    print(f"| {arch} | {r} | {b}x{n} | {o['flops'] / 1e9:.0f} | {o['compile_s']:.1f} | {1000 * med:.1f} | "
          f"{n * b / med:.2f} | {g:.3g} | {g / base if base else float('nan'):.2f} |", flush=True)
    del o
    gc.collect()
    jax.clear_caches()
  return rows


def bench_members(cd, k: int):
  """One run's step against K members' vmapped step (encdec_jax/members.py), same config, seeds
  0..K-1, alternating rounds; prints img/s of each and the per-member ratio."""
  import jax
  import numpy as np
  from encdec_jax import assemble, config as config_lib, members
  one = time_ours(cd)
  cfgs = [assemble.checked_config(config_lib.override(cd, {"seed": s})) for s in range(k)]
  g = members.Group(cfgs)
  n, b, r = cfgs[0].data.identities, cfgs[0].train.batch_size, cfgs[0].data.resolution
  rng = np.random.default_rng(0)
  host = [{key: rng.random((n, b, r, r, 3), dtype=np.float32) for key in g.batch_keys} for _ in range(k)]
  t0 = time.perf_counter()
  state = g.init()
  state, m = g.step_fn(state, g.device_batch(host), g.hyper)
  jax.block_until_ready(m)
  print(f"members: compile + first step {time.perf_counter() - t0:.1f} s; one run: compile "
        f"{one['compile_s']:.1f} s", flush=True)
  ones, groups = [], []
  for rnd in range(_ROUNDS.value):
    ones += run_ours(one, _STEPS.value)
    for _ in range(_STEPS.value):
      t = time.perf_counter()
      state, m = g.step_fn(state, g.device_batch(host), g.hyper)
      jax.block_until_ready(m)
      groups.append(time.perf_counter() - t)
    print(f"round {rnd + 1}: one run {1000 * statistics.median(ones[-_STEPS.value:]):.1f} ms/step, "
          f"{k} members {1000 * statistics.median(groups[-_STEPS.value:]):.1f} ms/step", flush=True)
  one_ips = n * b / statistics.median(ones)
  group_ips = k * n * b / statistics.median(groups)
  print(f"bench-members: K={k} aggregate {group_ips:.1f} img/s, one run {one_ips:.1f} img/s; "
        f"ratio {group_ips / one_ips:.2f} (K members in one program against the same K runs one "
        f"after another; >= 1: no slower)")


def main(argv):
  del argv
  _cli.start()
  import jax
  if _LOSSES.value:
    time_losses()
    return
  if _ARCHS.value:
    bench_archs(_ARCHS.value)
    return
  if _BREAKDOWN.value:
    breakdown(_config())
    return
  if _PROFILE.value:
    profile_step(_config())
    return
  if _MEMBERS.value:
    bench_members(_config(), _MEMBERS.value)
    return
  cd = _config()
  from encdec_jax.data import device_augment
  o = time_ours(cd)
  cfg = o["cfg"]
  b, r, n = cfg.train.batch_size, cfg.data.resolution, cfg.data.identities
  imgs = n * b
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}, "
        f"config {_ARCH.value}:{_VARIANT.value} {' '.join(_SET.value)}: {r}x{r}, batch {b} x {n} identities, "
        f"conv_impl={cfg.model.conv_impl}, dtype={cfg.model.dtype}")
  print(f"compile: {o['compile_s']:.1f} s (train step); set-up incl. init and warm-up {o['setup_s']:.1f} s")
  src = "XLA cost analysis" if jax.devices()[0].platform == "cpu" else "(accelerator: analytic or --step_gflop)"
  print(f"FLOPs/step: {src} {o['flops'] / 1e9:.1f} G, analytic {o['analytic'] / 1e9:.1f} G "
        f"({100 * (o['flops'] / o['analytic'] - 1):+.1f}%)")
  ours, peer = [], []
  peer_line = ""
  for k in range(_ROUNDS.value):
    ours += run_ours(o, _STEPS.value)
    print(f"round {k + 1}: ours {1000 * statistics.median(ours[-_STEPS.value:]):.1f} ms/step", flush=True)
    if _TORCH.value:
      dt, ips, peer_line = run_peer(b, r, _STEPS.value, cfg.model.dtype == "bfloat16")
      peer.append(ips)
      print(f"round {k + 1}: pytorch {1000 * dt:.0f} ms/step ({peer_line})", flush=True)
  med = statistics.median(ours)
  ours_ips = imgs / med
  gflops = o["flops"] / med / 1e9
  accel = jax.devices()[0].platform != "cpu"
  if accel:  # the card's own rates; the CPU-only PyTorch ceiling does not apply
    jax_peak = jax_matmul_gflops(8192, dtype="float32")
    bf16_peak = jax_matmul_gflops(8192, dtype="bfloat16")
    torch_peak = None
    ceiling = bf16_peak if cfg.model.dtype == "bfloat16" else jax_peak
  else:
    jax_peak, bf16_peak = jax_matmul_gflops(_CEILING_N.value), None
    torch_peak = torch_matmul_gflops() if _TORCH.value else None
    from experiments.flops import cpu_ceiling
    ceiling, ceiling_by = cpu_ceiling(jax_peak, torch_peak)
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  pipe, (raw_pipe, dev_aug) = pipeline_img_per_s(cfg)
  print(f"ours: {1000 * med:.1f} ms/step median of {len(ours)} (min {1000 * min(ours):.1f}, max "
        f"{1000 * max(ours):.1f}), {ours_ips:.1f} img/s, {gflops:.0f} GFLOP/s")
  if accel:
    print(f"matmul 8192^3 on {jax.devices()[0].device_kind}: fp32 (XLA default precision) "
          f"{jax_peak:.0f} GFLOP/s, bf16 {bf16_peak:.0f} GFLOP/s; MFU against the bf16 rate: "
          f"{gflops / bf16_peak:.3f}")
  else:
    print(f"matmul ceiling fp32 {_CEILING_N.value}^3: jax {jax_peak:.0f} GFLOP/s"
          + (f", pytorch {torch_peak:.0f} GFLOP/s" if torch_peak else "")
          + f"; the ceiling is the larger ({ceiling_by}, {ceiling:.0f} GFLOP/s)")
  print(f"peak RSS: {rss:.0f} MiB; input pipeline (augmentation) {pipe:.0f} img/s = "
        f"{pipe / ours_ips:.1f}x what the step consumes")
  used = "uses" if device_augment.on_device(cfg.data.augment_on, jax.devices()) else "does not use"
  print(f"augment_on=device: host part (uint8 gather + draws) {raw_pipe:.0f} img/s = "
        f"{raw_pipe / ours_ips:.1f}x the step; augmentation on {jax.devices()[0].platform} "
        f"{dev_aug:.0f} img/s ({cfg.data.augment_on!r} {used} it here)")
  pt = statistics.median(peer) if peer else float("nan")
  print(f"bench: ours={ours_ips:.2f} pytorch={pt:.2f} ratio={ours_ips / pt:.2f} "
        f"ceiling={gflops / ceiling:.2f}")


if __name__ == "__main__":
  _cli.run(main)
