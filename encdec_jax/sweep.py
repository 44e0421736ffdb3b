"""Local sweeps from a W&B sweep YAML, enumerated by W&B's own `sweeps` engine (the report: report.py).

The YAML is the one `wandb sweep` takes: `parameters` with `config.<field>` keys (what W&B agents
pass as --config.<field>=value), and a `command` whose `--config=` names the base config file.
"""
from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import yaml

from encdec_jax.config import number, override

# Grid sweeps end by themselves; random and bayes need a cap.
DEFAULT_RUN_CAP = 8


class SweepError(ValueError):
  pass


def load_sweep(path: str) -> dict:
  """The sweep YAML, checked: SweepError naming the file and what is wrong."""
  try:
    with open(path) as f:
      sweep = yaml.safe_load(f)
  except OSError as e:
    raise SweepError(f"cannot read the sweep {path!r}: {e.strerror}") from None
  except yaml.YAMLError as e:
    raise SweepError(f"{path} is not valid YAML: {str(e).splitlines()[0]} "
                     f"({getattr(e, 'problem_mark', '')})".replace(" ()", "")) from None
  if not isinstance(sweep, dict) or "parameters" not in sweep or "method" not in sweep:
    raise SweepError(f"{path}: not a W&B sweep config (needs 'method' and 'parameters')")
  if sweep["method"] not in ("grid", "random", "bayes"):
    raise SweepError(f"{path}: method {sweep['method']!r}; valid: ['bayes', 'grid', 'random']")
  if sweep["method"] == "bayes" and not (sweep.get("metric") or {}).get("name"):
    raise SweepError(f"{path}: a bayes sweep needs a 'metric' with a 'name' (and 'goal') to optimise")
  params = sweep["parameters"]
  if not isinstance(params, dict) or not params:
    raise SweepError(f"{path}: 'parameters' must map config.<section>.<field> to a spec")
  bad = [k for k in params if not k.startswith("config.")]
  if bad:
    raise SweepError(f"{path}: parameters {bad} must be named config.<section>.<field>")
  for k, spec in params.items():
    if not isinstance(spec, dict) or not spec:
      raise SweepError(f"{path}: parameter {k!r} needs 'values', 'value' or a distribution")
    if "values" in spec and not (isinstance(spec["values"], list) and spec["values"]):
      raise SweepError(f"{path}: parameter {k!r} has empty or non-list 'values'")
    for field in ("value", "min", "max", "mu", "sigma", "q"):
      if field in spec:
        spec[field] = number(spec[field])
    if "values" in spec:
      spec["values"] = [number(v) for v in spec["values"]]
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


def enumerate_runs(sweep: dict, max_runs: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
  """Parameter sets the sweeps engine proposes, in order: [{'config.model.bottleneck': 16, ...}].
  Random and bayes proposals are drawn from `seed` (the engine uses Python's and numpy's global
  generators, seeded here and restored after), so a re-run enumerates the same runs."""
  import random

  import numpy as np
  from sweeps import RunState, SweepRun, next_run
  cap = max_runs or sweep.get("run_cap") or (None if sweep["method"] == "grid" else DEFAULT_RUN_CAP)
  # The engine's schema knows only these keys (W&B's server also takes name, program, command,
  # run_cap, ...), so hand it just them.
  engine_spec = {k: sweep[k] for k in ("method", "parameters", "metric") if k in sweep}
  runs: list = []
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    # The engine's first proposal in a process imports modules that draw from `random`: one
    # throwaway proposal first, so that the seeded ones are the same in every process, whatever
    # ran before (the first enumeration of a fresh process proposed other runs than the second).
    try:
      next_run(engine_spec, [], validate=True)
    except Exception:  # noqa: BLE001 - reported by the seeded call below
      pass
    random.seed(seed)
    np.random.seed(seed)
    while cap is None or len(runs) < cap:
      try:
        r = next_run(engine_spec, runs, validate=True)
      except Exception as e:  # noqa: BLE001 - the engine's schema errors, as one line
        raise SweepError(f"the sweeps engine refused this sweep: {str(e).splitlines()[0]}") from None
      if r is None:
        break
      runs.append(SweepRun(name=f"run{len(runs)}", state=RunState.finished, config=r.config,
                           summary_metrics={}))
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  # The engine proposes numpy float64/int64 for distributions: Python numbers from here on (the
  # config's type check, config.json and run names see plain floats and ints).
  return [{k: number(v["value"]) for k, v in r.config.items()} for r in runs]


def short_keys(keys) -> dict[str, str]:
  """Each key's shortest dotted tail (without "config.") that no other key ends in: "seed" and
  "data.seed" for config.seed and config.data.seed, "bottleneck" alone for config.model.bottleneck."""
  bare = {k: k.removeprefix("config.") for k in keys}
  out = {}
  for k, b in bare.items():
    parts = b.split(".")
    for n in range(1, len(parts) + 1):
      tail = ".".join(parts[-n:])
      if tail not in {".".join(o.split(".")[-n:]) for kk, o in bare.items() if kk != k}:
        break
    out[k] = tail
  return out


def run_name(i: int, params: dict[str, Any]) -> str:
  short = short_keys(params)
  parts = [f"{short[k]}={v}" for k, v in params.items()]
  return re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"{i:02d}_" + "_".join(parts))[:120]


def run_sweep(sweep_path: str, out_dir: str, *, max_runs: int | None = None,
              config_overrides: dict[str, Any] | None = None, progress: bool = True,
              seed: int = 0, max_members: int = 0) -> list[dict]:
  """Runs every proposed config in-process (resuming partial runs, reusing finished ones whose
  stored config equals the requested one) and reports. Runs that differ only in fields members
  may vary (encdec_jax/members.py) train together, up to `max_members` at a time (0: as many as
  memory allows, at most members.DEFAULT_MAX; 1: one run at a time). A run that diverges (non-finite loss) is
  recorded as failed and the sweep goes on. Raises SweepError, before training anything, if a
  run folder holds a finished run of another config: its results would be stale."""
  from encdec_jax import train, workdir as workdir_lib
  from encdec_jax.assemble import checked_config
  sweep = load_sweep(sweep_path)
  base = load_config(base_config_arg(sweep))
  name = sweep.get("name") or os.path.splitext(os.path.basename(sweep_path))[0]
  runs = enumerate_runs(sweep, max_runs, seed)
  # Run names and the report's columns: the parameters that vary (a `value:` constant, or a
  # one-element list, is the same in every run and says nothing about it).
  axes = [k for k in (runs[0] if runs else {}) if len({repr(r[k]) for r in runs}) > 1]
  # An override of a swept parameter would give every run the same value under names that say
  # otherwise: duplicate runs, misreported. Overriding a constant (`value:`) is fine.
  overridden = {k.removeprefix("config.") for k in (config_overrides or {})}
  clash = [k for k in axes if k.removeprefix("config.") in overridden]
  if clash:
    values = ", ".join(dict.fromkeys(repr(r[clash[0]]) for r in runs))
    raise SweepError(f"--set {clash[0].removeprefix('config.')}=... would set {clash[0]}, which the sweep "
                     f"varies ({values}): every run would get the same value under a name that says "
                     f"otherwise. Change it in a copy of {sweep_path} instead.")
  configs = []
  for i, params in enumerate(runs):  # validate every run before training the first
    cfg = override(base, {**params, **(config_overrides or {})})
    cfg.wandb.group = cfg.wandb.group or name
    workdir = os.path.join(out_dir, run_name(i, {k: params[k] for k in axes}))
    cfg.wandb.name = os.path.basename(workdir)
    checked_config(cfg)
    saved = workdir_lib.saved_config(workdir)
    if saved is not None:
      old, new, diff = workdir_lib.config_diff(saved, cfg.to_dict())
      if diff:
        raise SweepError(
            f"{workdir} holds a run of another config ({workdir_lib.describe_diff(old, new, diff)}); "
            f"its results would be reported as this sweep's. Use another --workdir, or delete "
            f"that run's folder to train it again.")
    configs.append((i, params, cfg, workdir))
  os.makedirs(out_dir, exist_ok=True)
  rows: dict[int, dict] = {}
  todo = []
  for i, params, cfg, workdir in configs:
    row = {"run": os.path.basename(workdir), **params}
    ev = workdir_lib.finished_eval(workdir, cfg.to_dict())
    if ev is not None:
      rows[i] = {**row, **ev}
    else:
      todo.append((i, params, cfg, workdir))

  def record(i, params, workdir, result):
    row = {"run": os.path.basename(workdir), **params}
    if isinstance(result, train.NonFiniteError):
      print(f"[sweep {name}] run {i + 1} failed, the sweep goes on: {result}", flush=True)
      rows[i] = {**row, "status": "failed", "error": str(result).split(". ")[0]}
    else:
      rows[i] = {**row, **result}

  from encdec_jax import members as members_lib
  typed = [checked_config(cfg) for _, _, cfg, _ in todo]
  import jax
  cap = max_members if max_members > 0 else members_lib.auto_max_members(typed[0]) if typed else 1
  if jax.process_count() > 1:  # members train in one process; multi-host sweeps run one at a time
    cap = 1
  from encdec_jax.checkpoint import saved_steps
  starts = [max(saved_steps(w), default=0) for *_, w in todo]
  for group in members_lib.group_runs(typed, cap, starts):
    runs_ = [todo[k] for k in group]
    label = ", ".join(str(i + 1) for i, *_ in runs_)
    print(f"[sweep {name}] run{'s' * (len(runs_) > 1)} {label}/{len(configs)}"
          + (f" as {len(runs_)} members of one program" if len(runs_) > 1 else f": {runs_[0][1]}"),
          flush=True)
    out = train.train_runs([cfg for _, _, cfg, _ in runs_], [w for *_, w in runs_], progress=progress)
    for (i, params, _, workdir), result in zip(runs_, out):
      record(i, params, workdir, result)
  results = [rows[i] for i, *_ in configs]
  from encdec_jax import report
  report.write_report(results, out_dir, axes, sweep.get("metric", {}))
  return results
