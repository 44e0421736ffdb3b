"""Export the configured dataset to one .npz, for training where TensorFlow cannot be imported:

  python -m experiments.export_data --config=experiments/configs/original.py:small --output=data/small.npz
  # then, on a machine with jax, flax, optax and orbax but no tensorflow:
  python -m experiments.train --config=experiments/configs/original.py:small \\
      --config.data.name=arrays --config.data.root=data/small.npz --workdir=runs/small

The file holds the train and test splits as plain arrays (no pickle) and what they were made
from; training, evaluation, the judges and the sweep read it with numpy alone.
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

from experiments import _cli

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/original.py",
                                          "config file, optionally :variant", lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "the .npz to write", required=True)


def main(argv):
  del argv
  _cli.start()
  from encdec_jax import assemble, config as config_lib
  from encdec_jax.data import loading
  try:
    cfg = assemble.checked_config(_CONFIG.value)
    if cfg.data.name == "arrays":
      raise config_lib.ConfigError("config.data.name='arrays' is already an exported file")
    meta = loading.export_arrays(cfg, _OUTPUT.value)
  except config_lib.ConfigError as e:
    sys.exit(f"error: {e}")
  size = os.path.getsize(_OUTPUT.value) / 2 ** 20
  print(f"wrote {_OUTPUT.value} ({size:.1f} MiB): {meta['dataset_key']}; train with "
        f"--config.data.name=arrays --config.data.root={_OUTPUT.value}")


if __name__ == "__main__":
  _cli.run(main)
