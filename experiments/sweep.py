"""Run a sweep locally: python -m experiments.sweep [--sweep=YAML] [--workdir=DIR]

The YAML is in W&B's sweep format (the same file works with `wandb sweep` + `wandb agent`).
Runs go to DIR/<run name>/; DIR gets results.csv, results.md and plots. Re-running resumes.
"""
import os
import sys

from absl import flags

from experiments import _cli

_SWEEP = flags.DEFINE_string("sweep", "experiments/sweeps/default.yaml", "W&B sweep YAML")
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (default sweeps_out/<yaml name>)")
_MAX_RUNS = flags.DEFINE_integer("max_runs", None, "cap on runs (random/bayes default 8)")
_SET = flags.DEFINE_multi_string("set", [], "extra override for every run, e.g. train.steps=100")
_MEMBERS = flags.DEFINE_integer("members", 0, "runs trained together as members of one compiled "
                                "program (encdec_jax/members.py): 0 = as many as memory allows "
                                "(at most 8), 1 = one run at a time")
_DISTRIBUTED = _cli.define_distributed()
_VERBOSE = flags.DEFINE_bool("verbose", False, "show the full traceback of an error")
_SEED = flags.DEFINE_integer("sweep_seed", 0, "seed of random and bayes proposals (a re-run with "
                             "the same seed proposes the same runs)")


def main(argv):
  del argv
  _cli.start()
  from encdec_jax import config as config_lib, sweep
  out = _WORKDIR.value or os.path.join("sweeps_out", os.path.splitext(os.path.basename(_SWEEP.value))[0])
  extra = _cli.parse_set(_SET.value)
  _cli.init_distributed(_DISTRIBUTED.value)
  from encdec_jax import preemption, train
  try:
    results = sweep.run_sweep(_SWEEP.value, out, max_runs=_MAX_RUNS.value, config_overrides=extra,
                              seed=_SEED.value, max_members=_MEMBERS.value)
  except preemption.Preempted as e:
    print(f"\n{e} The sweep resumes with that run when started again.", file=sys.stderr)
    sys.exit(128 + e.signum)
  except (train.NonFiniteError, config_lib.ConfigError, sweep.SweepError, OSError) as e:
    if _VERBOSE.value:
      raise
    print(f"\nerror: {e}", file=sys.stderr)
    sys.exit(1)
  failed = [r["run"] for r in results if r.get("status") == "failed"]
  print(f"{len(results)} runs; report: {os.path.join(out, 'report.md')}"
        + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  _cli.run(main)
