"""Run a sweep locally: python -m experiments.sweep [--sweep=YAML] [--workdir=DIR]

The YAML is in W&B's sweep format (the same file works with `wandb sweep` + `wandb agent`).
Runs go to DIR/<run name>/; DIR gets results.csv, results.md and plots. Re-running resumes.
"""
import os
import sys

from absl import app, flags, logging

_SWEEP = flags.DEFINE_string("sweep", "experiments/sweeps/default.yaml", "W&B sweep YAML")
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (default sweeps_out/<yaml name>)")
_MAX_RUNS = flags.DEFINE_integer("max_runs", None, "cap on runs (random/bayes default 8)")
_SET = flags.DEFINE_multi_string("set", [], "extra override for every run, e.g. train.steps=100")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  import yaml
  from encdec_jax import sweep
  out = _WORKDIR.value or os.path.join("sweeps_out", os.path.splitext(os.path.basename(_SWEEP.value))[0])
  extra = {}
  for s in _SET.value:
    k, _, v = s.partition("=")
    extra["config." + k.removeprefix("config.")] = yaml.safe_load(v)
  from encdec_jax import distributed, train
  try:
    distributed.initialize()  # ENCDEC_DISTRIBUTED; before anything touches a device
  except distributed.DistributedError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  try:
    results = sweep.run_sweep(_SWEEP.value, out, max_runs=_MAX_RUNS.value, config_overrides=extra)
  except train.Preempted as e:
    print(f"\n{e} The sweep resumes with that run when started again.", file=sys.stderr)
    sys.exit(128 + e.signum)
  except (train.NonFiniteError, train.ConfigError, sweep.SweepError) as e:
    print(f"\nerror: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"{len(results)} runs; report: {os.path.join(out, 'report.md')}")


if __name__ == "__main__":
  app.run(main)
