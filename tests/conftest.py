"""Shared fixtures: one tiny dataset per session, tiny configs, quiet logs."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_SILENT", "true")
# JAX's persistent compilation cache, shared by the test workers and every process they start:
# the suite compiles the same tiny programs dozens of times (each CLI run, each resume), and a
# cache hit is the same executable, so the numbers are the same. It starts empty in a fresh clone
# (the folder is git-ignored): a tiny train CLI run costs 13 s of CPU cold, 5.5 s warm.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax_tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# XLA's backend optimisation at level 1 instead of 3 for the suite and every process it starts:
# the suite compiles hundreds of tiny programs and runs each for a few steps, so compile time is
# most of its CPU. Same-process and cross-process comparisons all run under the same flag; the
# numbers differ from a default run's only in float rounding (BENCHMARKS.md, "Test suite").
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1").strip()
# And XLA:CPU's older fusion code generator, for the same reason: the tiny train steps of dfaker,
# liae and the Original compile in 5.1 s against 7.0 s with it, and step as fast. On fresh clones
# back to back the test phase took 4 min 58 s against 6 min 53 s (BENCHMARKS.md, "Test suite").
# Same rule as above: every process of the suite runs under it, and numbers move only at float
# rounding. Not for users: the small model's step is 13% slower with it at XLA's default level.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

import pytest  # noqa: E402
from absl import logging  # noqa: E402

logging.set_verbosity(logging.ERROR)

from encdec_jax import hostmem  # noqa: E402

hostmem.tune_malloc()  # as the entry points do: the in-process tests run faster too

from encdec_jax import config as config_lib  # noqa: E402
from experiments.configs import original  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One TFDS folder for the whole run, shared by the xdist workers: the tiny dataset and its judges
  are prepared once, not once per worker (their cache locks make concurrent preparation safe:
  data_test, judges_test). No test writes into it but through those caches."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the run's folder; each worker's basetemp is a folder inside it
  path = root / "tfds_shared"
  path.mkdir(exist_ok=True)
  return str(path)


@pytest.fixture
def tiny_config(data_dir):
  """A fresh tiny config (16 px, width 1/16, 2 identities) reading the session's dataset."""
  def make(**overrides):
    return config_lib.override(original.get_config("tiny"), {"data.dir": data_dir, **overrides})
  return make


@pytest.fixture(scope="session")
def tiny_data(data_dir):
  """(train, test) arrays of the tiny dataset, built once."""
  from encdec_jax import assemble
  from encdec_jax.data import loading
  c = original.get_config("tiny")
  c.data.dir = data_dir
  return loading.load_data(assemble.checked_config(c))


# The test files that take longest (measured with --durations=0 on 2 cores, seconds of test time),
# run first: with `--dist loadfile` each file goes whole to the next free worker, so the long
# files started last would leave the other worker idle at the end.
LONGEST_FIRST = ("members_test", "archs_test", "robust_test", "losses_test", "photos_test",
                 "sweep_test", "train_test", "gpu_check_test", "judges_test", "multihost_test",
                 "models_test", "mesh_test")  # 118 93 85 72 69 61 56 52 47 38 30 25


def pytest_collection_modifyitems(items):
  rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
  key = lambda item: rank.get(item.path.stem, len(rank))  # noqa: E731
  items[:] = sorted(items, key=key)  # stable: within a file, and among the rest, collection order
