"""Local sweeps from a W&B sweep YAML, enumerated by W&B's own `sweeps` engine (the report: report.py).

The YAML is the one `wandb sweep` takes: `parameters` with `config.<field>` keys (what W&B agents
pass as --config.<field>=value), and a `command` whose `--config=` names the base config file.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
from typing import Any

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
  from encdec_jax import report
  report.write_report(results, out_dir, list(runs[0]) if runs else [], sweep.get("metric", {}))
  return results
