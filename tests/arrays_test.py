"""Training without TensorFlow: data exported to a .npz, read by data.name='arrays'."""
import os
import subprocess
import sys

import numpy as np
import pytest

from encdec_jax import assemble, config as config_lib
from encdec_jax.data import loading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run a module as `python -m` would, in a process where importing TensorFlow (or TFDS) fails, as
# on a JAX GPU image that has none.
_NO_TF = """
import runpy, sys
class Hidden:  # every finder answers "not installed" for TensorFlow and TFDS
  def __init__(self, finder):
    self.finder = finder
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
      return None
    return self.finder.find_spec(name, path, target)
  def invalidate_caches(self):
    getattr(self.finder, "invalidate_caches", lambda: None)()
sys.meta_path[:] = [Hidden(f) for f in sys.meta_path]
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
  from experiments.configs import original
  c = original.get_config("tiny")
  c.data.dir = data_dir
  path = str(tmp_path_factory.mktemp("arrays") / "tiny.npz")
  meta = loading.export_arrays(assemble.checked_config(c), path)
  return path, meta


def test_export_round_trips_every_array(exported, tiny_config, tiny_data):
  path, meta = exported
  cfg = assemble.checked_config(tiny_config(**{"data.name": "arrays", "data.root": path}))
  train, test = loading.load_data(cfg)
  for got, want in ((train, tiny_data[0]), (test, tiny_data[1])):
    assert sorted(got) == sorted(want)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
  # The same judges' cache as the data it came from.
  assert loading.dataset_key(cfg) == meta["dataset_key"] and meta["dataset_key"].startswith("synthetic_faces_")


def test_a_mismatched_or_missing_file_is_named(exported, tiny_config):
  path, _ = exported
  bad = assemble.checked_config(tiny_config(**{"data.name": "arrays", "data.root": path,
                                                   "data.resolution": 32}))
  with pytest.raises(config_lib.ConfigError, match=r"config.data.resolution=32 but .*tiny.npz holds data with resolution=16"):
    loading.load_data(bad)
  gone = assemble.checked_config(tiny_config(**{"data.name": "arrays", "data.root": path + ".gone"}))
  with pytest.raises(config_lib.ConfigError, match=r"is not a file; .*experiments.export_data"):
    loading.load_data(gone)


def test_trains_and_evaluates_where_tensorflow_cannot_be_imported(exported, tmp_path, data_dir):
  path, _ = exported
  blocked = subprocess.run([sys.executable, "-c", _NO_TF.replace(
      "runpy.run_module(sys.argv[0], run_name=\"__main__\", alter_sys=True)", "import tensorflow")],
      capture_output=True, text=True)
  assert "No module named 'tensorflow'" in blocked.stderr  # the block works
  cmd = [sys.executable, "-c", _NO_TF, "experiments.train",
         "--config=experiments/configs/original.py:tiny", f"--workdir={tmp_path / 'run'}",
         "--config.data.name=arrays", f"--config.data.root={path}", f"--config.data.dir={data_dir}",
         "--config.train.steps=2"]
  r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "eval/swap_face_mae=" in r.stdout and "eval/id_transfer=" in r.stdout
  assert os.path.exists(tmp_path / "run" / "checkpoints" / "2")
