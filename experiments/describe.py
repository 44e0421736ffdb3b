"""Per part of a model: parameters, forward FLOPs per image, and the train step's memory.

  python -m experiments.describe --config=experiments/configs/df.py
  python -m experiments.describe --config=experiments/configs/liae.py:small --config.model.bottleneck=32

FLOPs come from XLA's cost analysis of each compiled stage (encode, each identity's intermediate,
each decoder) and of the train step; memory from XLA's memory analysis of the compiled step on
this machine's first device. Nothing is trained and no data is read.
"""
import sys

from ml_collections import config_flags

from experiments import _cli

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/original.py",
                                          "config file, optionally with :variant")


def main(argv):
  del argv
  _cli.start()
  from encdec_jax import assemble, describe
  from encdec_jax.config import ConfigError
  try:
    cfg = assemble.checked_config(_CONFIG.value)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  print(describe.format_description(describe.describe(cfg), cfg))


if __name__ == "__main__":
  _cli.run(main)
