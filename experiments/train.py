"""Train one model: python -m experiments.train --config=experiments/configs/original.py --workdir=DIR

Overrides: --config.model.bottleneck=256 --config.loss=ssim:1.0,mae:1.0 (the form W&B agents pass).
Without --workdir, the run goes to runs/<wandb run id or time>.
"""
import os
import sys
import time

from absl import flags
from ml_collections import config_flags

from experiments import _cli

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/original.py",
                                          "config file, optionally :variant", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, metrics and previews go")
_DISTRIBUTED = _cli.define_distributed()
_VERBOSE = flags.DEFINE_bool("verbose", False, "show the full traceback of an error")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_config_change", False,
                                  "continue a workdir whose saved config differs (logged to "
                                  "config_changes.jsonl)")


def main(argv):
  del argv
  _cli.start()
  _cli.init_distributed(_DISTRIBUTED.value)
  from encdec_jax import checkpoint as ckpt_lib, config as config_lib, preemption, train
  workdir = _WORKDIR.value or os.path.join("runs", os.environ.get("WANDB_RUN_ID") or time.strftime("%Y%m%d-%H%M%S"))
  try:
    final = train.train_and_evaluate(_CONFIG.value, workdir, allow_config_change=_ALLOW_CHANGE.value)
  except preemption.Preempted as e:
    print(f"\n{e}", file=sys.stderr)
    sys.exit(128 + e.signum)  # non-zero: schedulers (SLURM --requeue, k8s Jobs) restart it
  except (train.NonFiniteError, config_lib.ConfigError, ckpt_lib.CheckpointError, OSError) as e:
    if _VERBOSE.value:
      raise
    print(f"\nerror: {e}", file=sys.stderr)
    sys.exit(1)
  # A finished run's stored eval.json may hold nulls (non-finite values) and lists.
  print(" ".join(f"{k}={v:.4g}" for k, v in sorted(final.items())
                 if k.count("/") <= 1 and isinstance(v, (int, float))))


if __name__ == "__main__":
  _cli.run(main)
