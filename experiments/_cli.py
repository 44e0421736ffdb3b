"""What the entry points share: parsing flags whose errors are one line, not a traceback."""
import sys


def parse_flags(argv):
  """absl's flag parsing, with ml_collections' errors for a bad --config.<field>=value (a deep
  AttributeError) turned into one line naming the field and the valid ones."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    sys.exit(f"error: {_bad_override(argv) or e}")


def _bad_override(argv) -> str | None:
  """The first --config.<field>=value of argv that the config file cannot take, explained."""
  import yaml
  from encdec_jax import config as config_lib, sweep
  arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")),
             "experiments/configs/original.py")
  try:
    base = sweep.load_config(arg)
  except Exception as e:  # noqa: BLE001 - the config file itself is the problem
    return f"--config={arg}: {e}"
  for a in argv:
    if a.startswith("--config.") and "=" in a:
      key, value = a[2:].split("=", 1)
      try:
        config_lib.override(base, {key: yaml.safe_load(value)})
      except (config_lib.ConfigError, yaml.YAMLError) as e:
        msg = str(e).splitlines()[0]
        return f"--{msg}" if msg.startswith(key) else f"--{key}: {msg}"
  return None
