"""Local sweeps from a W&B sweep YAML, enumerated by W&B's own `sweeps` engine, and their report.

The YAML is the one `wandb sweep` takes: `parameters` with `config.<field>` keys (what W&B agents
pass as --config.<field>=value), and a `command` whose `--config=` names the base config file.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
from typing import Any

import numpy as np
import yaml

# Grid sweeps end by themselves; random and bayes need a cap.
DEFAULT_RUN_CAP = 8


class SweepError(ValueError):
  pass


def load_sweep(path: str) -> dict:
  with open(path) as f:
    sweep = yaml.safe_load(f)
  if not isinstance(sweep, dict) or "parameters" not in sweep or "method" not in sweep:
    raise SweepError(f"{path}: not a W&B sweep config (needs 'method' and 'parameters')")
  bad = [k for k in sweep["parameters"] if not k.startswith("config.")]
  if bad:
    raise SweepError(f"{path}: parameters {bad} must be named config.<section>.<field>")
  return sweep


def base_config_arg(sweep: dict) -> str:
  """The --config=FILE[:VARIANT] of the sweep's command."""
  for a in sweep.get("command", []):
    if isinstance(a, str) and a.startswith("--config="):
      return a.split("=", 1)[1]
  return "experiments/configs/original.py"


def load_config(arg: str):
  """Loads get_config(variant) from 'path/to/file.py[:variant]'."""
  path, _, variant = arg.partition(":")
  spec = importlib.util.spec_from_file_location("encdec_sweep_config", path)
  if spec is None or not os.path.exists(path):
    raise SweepError(f"config file {path!r} not found")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(variant or None)


def enumerate_runs(sweep: dict, max_runs: int | None = None) -> list[dict[str, Any]]:
  """Parameter sets the sweeps engine proposes, in order: [{'config.model.bottleneck': 16, ...}]."""
  from sweeps import RunState, SweepRun, next_run
  cap = max_runs or sweep.get("run_cap") or (None if sweep["method"] == "grid" else DEFAULT_RUN_CAP)
  # The engine's schema knows only these keys (W&B's server also takes name, program, command,
  # run_cap, ...), so hand it just them.
  engine_spec = {k: sweep[k] for k in ("method", "parameters", "metric") if k in sweep}
  runs: list = []
  while cap is None or len(runs) < cap:
    r = next_run(engine_spec, runs, validate=True)
    if r is None:
      break
    runs.append(SweepRun(name=f"run{len(runs)}", state=RunState.finished, config=r.config,
                         summary_metrics={}))
  return [{k: v["value"] for k, v in r.config.items()} for r in runs]


def apply_overrides(config, params: dict[str, Any]):
  """Sets config.a.b = v for {'config.a.b': v}; unknown fields raise listing the valid ones."""
  config = config.copy_and_resolve_references()
  for key, value in params.items():
    path = key.split(".")[1:]
    node = config
    for p in path[:-1]:
      if p not in node:
        raise SweepError(f"sweep parameter {key!r}: no section {p!r}; valid: {sorted(node.keys())}")
      node = node[p]
    if path[-1] not in node:
      raise SweepError(f"sweep parameter {key!r}: no field {path[-1]!r}; valid: {sorted(node.keys())}")
    old = node[path[-1]]
    if isinstance(old, float) and isinstance(value, int):
      value = float(value)
    node[path[-1]] = value
  return config


def run_name(i: int, params: dict[str, Any]) -> str:
  parts = [f"{k.split('.')[-1]}={v}" for k, v in params.items()]
  return re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"{i:02d}_" + "_".join(parts))[:120]


def run_sweep(sweep_path: str, out_dir: str, *, max_runs: int | None = None,
              config_overrides: dict[str, Any] | None = None, progress: bool = True) -> list[dict]:
  """Runs every proposed config in-process (resuming finished or partial runs) and reports."""
  from encdec_jax import train
  from encdec_jax.config import from_config_dict
  sweep = load_sweep(sweep_path)
  base = load_config(base_config_arg(sweep))
  name = sweep.get("name") or os.path.splitext(os.path.basename(sweep_path))[0]
  runs = enumerate_runs(sweep, max_runs)
  configs = []
  for i, params in enumerate(runs):  # validate every run before training the first
    cfg = apply_overrides(base, {**params, **(config_overrides or {})})
    cfg.wandb.group = cfg.wandb.group or name
    from_config_dict(cfg)
    configs.append((i, params, cfg))
  os.makedirs(out_dir, exist_ok=True)
  results = []
  for i, params, cfg in configs:
    workdir = os.path.join(out_dir, run_name(i, params))
    cfg.wandb.name = os.path.basename(workdir)
    done = os.path.join(workdir, "eval.json")
    if os.path.exists(done) and json.load(open(done)).get("step") == cfg.train.steps:
      final = json.load(open(done))
    else:
      print(f"[sweep {name}] run {i + 1}/{len(configs)}: {params}", flush=True)
      final = train.train_and_evaluate(cfg, workdir, progress=progress)
    results.append({"run": os.path.basename(workdir), **params, **final})
  write_report(results, out_dir, list(runs[0]) if runs else [], sweep.get("metric", {}))
  return results


def write_report(results: list[dict], out_dir: str, param_keys: list[str], metric: dict) -> None:
  """results.csv, results.md and PNG plots of final metrics against bottleneck size."""
  if not results:
    return
  headline = ["eval/swap_mae", "eval/swap_ssim", "eval/id_transfer", "eval/id_leak", "eval/attr_mae",
              "eval/swap_mae_input", "eval/recon_mae", "eval/recon_ssim", "eval/recon_psnr"]
  headline = [h for h in headline if h in results[0]]
  cols = ["run", *param_keys, "step", *headline]
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols + sorted(set(results[0]) - set(cols)), extrasaction="ignore")
    w.writeheader()
    w.writerows(results)
  fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
  lines = [f"# Sweep results ({len(results)} runs)", ""]
  if metric:
    best = sorted(results, key=lambda r: r.get(metric["name"], float("inf")),
                  reverse=metric.get("goal") == "maximize")[0]
    lines += [f"Best by `{metric['name']}` ({metric.get('goal', 'minimize')}): **{best['run']}**", ""]
  lines += ["`swap_*`: decoder j on encoder(x_i) against the true rendering of x_i's pose, expression "
            "and lighting as identity j; `swap_mae_input` is what returning the input unchanged scores.", ""]
  short = [c.replace("config.", "").replace("eval/", "") for c in cols]
  lines += ["| " + " | ".join(short) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in results]
  plots = _plot(results, out_dir, [h for h in headline if h != "eval/swap_mae_input"])
  lines += [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  _write_full_report(results, out_dir, param_keys, metric, headline, plots)


def seed_spread(results: list[dict], param_keys: list[str], metrics: list[str]) -> list[dict]:
  """Groups runs that differ only in config.seed: per group, n and the mean and std of each metric
  (an empty list when no setting ran with more than one seed)."""
  others = [k for k in param_keys if k != "config.seed"]
  groups: dict = {}
  for r in results:
    groups.setdefault(tuple(str(r.get(k)) for k in others), []).append(r)
  out = []
  for key, rs in groups.items():
    if len(rs) < 2:
      continue
    row = {"setting": ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, key)), "n": len(rs)}
    for m in metrics:
      v = [r[m] for r in rs if m in r]
      if v:
        row[m] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
    out.append(row)
  return out


_METRIC_HELP = {
    "swap_mae": "decoder j on encoder(x_i) against the true rendering of x_i's pose, expression and "
                "lighting as identity j (lower is better)",
    "swap_ssim": "the same comparison by SSIM (higher is better)",
    "id_transfer": "share of swaps into j that the identity judge recognises as j (higher is better)",
    "id_leak": "share still recognised as the source identity (lower is better)",
    "attr_mae": "pose/expression error of the swap against its source, in standard deviations "
                "(lower is better; the judge's own floor on real images is `attr_mae_floor`)",
    "swap_mae_input": "what returning the input unchanged scores: a swap must beat it",
    "recon_mae": "decoder i on encoder(x_i) against x_i",
}


def _write_full_report(results, out_dir, param_keys, metric, headline, plots):
  """report.md: what each metric means, the table, the plots, one grid of the same held-out
  faces swapped by every run, and the spread over seeds."""
  fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
  lines = [f"# Sweep report: {os.path.basename(os.path.abspath(out_dir))}", "",
           f"{len(results)} runs. Metrics on held-out faces at each run's last step:", ""]
  lines += [f"- `{k}`: {v}" for k, v in _METRIC_HELP.items() if f"eval/{k}" in headline]
  if "eval/judge_accuracy" in results[0]:
    acc = results[0]["eval/judge_accuracy"]
    floor = results[0].get("eval/attr_mae_floor")
    lines += ["", f"Judges (trained once on this dataset's real training images): identity accuracy "
              f"{100 * acc:.1f}% on held-out renderings"
              + (f", pose/expression floor {floor:.3f} std units." if floor is not None else ".")]
  missing = [m for m in ("eval/swap_mae", "eval/attr_mae") if m not in results[0]]
  if missing:
    lines += ["", "Not possible on this data (no ground-truth swaps or factors): "
              + ", ".join(f"`{m[5:]}`" for m in missing) + "."]
  if metric and metric.get("name") in results[0]:
    best = sorted(results, key=lambda r: r.get(metric["name"], float("inf")),
                  reverse=metric.get("goal") == "maximize")[0]
    lines += ["", f"Best by `{metric['name']}` ({metric.get('goal', 'minimize')}): **{best['run']}**"]
  cols = ["run", *param_keys, *headline]
  short = [c.replace("config.", "").replace("eval/", "") for c in cols]
  lines += ["", "| " + " | ".join(short) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in results]
  lines += [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
  grid = _swap_grid(results, out_dir)
  if grid:
    lines += ["", "## The same held-out faces, swapped by every run", "",
              "Top row: inputs (identity i); second row: the true rendering as the other identity; "
              "then one row per run: its swap of each input into the other identity.", "",
              f"![swap grid]({grid})"]
  spread = seed_spread(results, param_keys, headline)
  lines += ["", "## Spread over seeds", ""]
  if spread:
    ms = [m for m in headline if any(m in r for r in spread)]
    lines += ["| setting | seeds | " + " | ".join(m[5:] for m in ms) + " |", "|" + "---|" * (2 + len(ms))]
    for r in spread:
      cells = [f"{r[m][0]:.4f} ± {r[m][1]:.4f}" if m in r else "" for m in ms]
      lines.append(f"| {r['setting']} | {r['n']} | " + " | ".join(cells) + " |")
    lines += ["", "mean ± sample std over seeds: differences smaller than about twice the std "
              "are noise."]
  else:
    lines += ["Every setting ran with one seed (`config.seed` is not a parameter of this sweep), so "
              "these numbers carry no error bars. Add `config.seed: {values: [0, 1]}` to the YAML "
              "to measure the spread."]
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def _swap_grid(results, out_dir, per_identity: int = 3) -> str | None:
  """swap_grid.png: fixed held-out faces swapped by every run (one row per run); None if the runs
  cannot be loaded or do not share an image size."""
  from encdec_jax import images as image_lib, inference, train
  rows, labels, res = [], [], None
  try:
    first = inference.load_run(os.path.join(out_dir, results[0]["run"]))
  except Exception:  # noqa: BLE001 - a report without its grid beats no report
    return None
  _, test = train.load_data(first.cfg)
  n = first.cfg.data.identities
  picks = [k for i in range(n) for k in np.flatnonzero(test["identity"] == i)[:per_identity]]
  x = test["image"][picks].astype(np.float32) / 255.0
  ids = test["identity"][picks]
  target = (ids + 1) % n
  rows.append(x)
  labels.append("input")
  if "swaps" in test:
    rows.append(test["swaps"][picks, target].astype(np.float32) / 255.0)
    labels.append("true swap")
  for r in results:
    try:
      run = first if r is results[0] else inference.load_run(os.path.join(out_dir, r["run"]))
    except Exception:  # noqa: BLE001
      continue
    if run.cfg.data.resolution != first.cfg.data.resolution:
      continue
    out = np.zeros_like(x)
    for t in np.unique(target):  # one batched call per target identity
      sel = target == t
      out[sel] = inference.swap(run, x[sel], int(t), blend=False)[0]
    rows.append(out)
    labels.append(r["run"])
  g = image_lib.grid(np.stack(rows))
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  h, w = g.shape[:2]
  fig, ax = plt.subplots(figsize=(2 + w / 40, 0.5 + h / 40))
  ax.imshow(g, interpolation="nearest")
  step = h / len(rows)
  ax.set_yticks([step * (k + 0.5) for k in range(len(rows))], labels, fontsize=7)
  ax.set_xticks([])
  fig.tight_layout()
  name = "swap_grid.png"
  fig.savefig(os.path.join(out_dir, name), dpi=100, bbox_inches="tight", metadata={
      "Software": "encdec_jax", "Description": image_lib.PROVENANCE})
  plt.close(fig)
  return name


def _plot(results: list[dict], out_dir: str, metrics: list[str]) -> list[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  xk, lk = "config.model.bottleneck", "config.loss"
  if not any(xk in r for r in results):
    return []
  names = []
  for m in metrics:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for loss in sorted({str(r.get(lk, "default")) for r in results}):
      pts = sorted((r[xk], r[m]) for r in results if str(r.get(lk, "default")) == loss and m in r)
      ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=loss)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bottleneck size")
    ax.set_ylabel(m)
    ax.set_title(f"{m} vs bottleneck")
    ax.grid(alpha=0.3)
    ax.legend(title="loss", fontsize=8)
    fig.tight_layout()
    name = m.replace("eval/", "").replace("/", "_") + ".png"
    fig.savefig(os.path.join(out_dir, name), dpi=100)
    plt.close(fig)
    names.append(name)
  return names
