"""What every entry point shares: start-up, flag parsing whose errors are one line (not a
traceback), and the one `--set section.field=value` parser.

  if __name__ == "__main__":
    _cli.run(main)          # absl's app.run with parse_flags; main calls _cli.start() first
"""
import os
import sys


def start() -> None:
  """Start-up of every entry point, before JAX does any work: glibc's malloc thresholds raised
  (XLA:CPU's step buffers stay in the heap, encdec_jax/hostmem.py) and the INFO logs of Orbax,
  TFDS and TensorFlow silenced."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import logging
  from encdec_jax import hostmem
  hostmem.tune_malloc()
  logging.set_verbosity(logging.ERROR)


def define_distributed():
  from absl import flags
  return flags.DEFINE_enum("distributed", None, ["off", "auto", "explicit"],
                           "multi-host start-up (default: $ENCDEC_DISTRIBUTED or off); see "
                           "encdec_jax/distributed.py")


def init_distributed(mode) -> None:
  """jax.distributed's start-up (encdec_jax/distributed.py), before anything touches a device;
  a bad setting exits 2 with one line."""
  from encdec_jax import distributed
  try:
    distributed.initialize(mode)
  except distributed.DistributedError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def run(main) -> None:
  from absl import app
  app.run(_stoppable(main), flags_parser=parse_flags)


def _stoppable(main):
  """main, ended by SIGTERM or SIGINT anywhere outside the training steps (which save and raise
  Preempted, handled by main) with one line and exit 128 + the signal, never a traceback."""
  def wrapped(argv):
    from encdec_jax import preemption
    try:
      with preemption.stop_raises():
        return main(argv)
    except preemption.Stopped as e:
      print(f"\n{e}", file=sys.stderr)
      sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # a second Ctrl-C while the training loop was saving
      print("\nstopped by SIGINT; the checkpoints and results written so far are kept. Run the "
            "same command again to finish.", file=sys.stderr)
      sys.exit(130)
  return wrapped


def parse_set(values: list[str]) -> dict:
  """--set section.field=value flags -> {'config.section.field': value}: values read as YAML
  (numbers as numbers, 1e-3 too). SystemExit with one line naming the bad flag."""
  import yaml
  from encdec_jax import config as config_lib
  out = {}
  for s in values:
    k, eq, v = s.partition("=")
    try:
      if not eq or not k:
        raise ValueError("expected section.field=value")
      out["config." + k.removeprefix("config.")] = config_lib.number(yaml.safe_load(v))
    except (ValueError, yaml.YAMLError) as e:
      sys.exit(f"error: --set {s!r}: {str(e).splitlines()[0]}")
  return out


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
