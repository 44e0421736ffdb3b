"""Train one model: python -m experiments.train --config=experiments/configs/original.py --workdir=DIR

Overrides: --config.model.bottleneck=256 --config.loss=ssim:1.0,mae:1.0 (the form W&B agents pass).
Without --workdir, the run goes to runs/<wandb run id or time>.
"""
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/original.py",
                                          "config file, optionally :variant", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, metrics and previews go")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)  # Orbax logs every save at INFO, TFDS warns on custom configs
  from encdec_jax import train
  workdir = _WORKDIR.value or os.path.join("runs", os.environ.get("WANDB_RUN_ID") or time.strftime("%Y%m%d-%H%M%S"))
  final = train.train_and_evaluate(_CONFIG.value, workdir)
  print(" ".join(f"{k}={v:.4g}" for k, v in sorted(final.items()) if k.count("/") <= 1))


if __name__ == "__main__":
  app.run(main)
