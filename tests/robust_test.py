"""Runs survive preemption, kill -9 and config mix-ups, and lose nothing (NaNs: nonfinite_test.py)."""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from encdec_jax import assemble
from encdec_jax import checkpoint as ckpt_lib, config as config_lib, train, tracking
from encdec_jax.program import Trainer
from tests.helpers import read_jsonl, restored_state, steps_saved

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_cmd(workdir, data_dir, *overrides):
  return [sys.executable, "-m", "experiments.train", "--config=experiments/configs/original.py:tiny",
          f"--config.data.dir={data_dir}", f"--workdir={workdir}", *overrides]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")


def _wait_for(pred, timeout=180, what=""):
  t = time.time()
  while not pred():
    if time.time() - t > timeout:
      raise TimeoutError(what)
    time.sleep(0.05)


def _params(c, workdir, step):
  return restored_state(c, workdir, step)


def test_sigterm_and_ctrl_c_save_the_step_exit_cleanly_and_resume_the_wandb_run(tmp_path, tiny_data, data_dir):
  """SIGTERM (a scheduler's preemption) exits 143, Ctrl-C (SIGINT) 130, each after saving the step
  it was on; the resumed run continues the same W&B run (one id, kept in the workdir)."""
  w = str(tmp_path / "run")
  metrics = os.path.join(w, "metrics.jsonl")
  cmd = _train_cmd(w, data_dir, "--config.train.steps=1000000", "--config.train.checkpoint_every=100000",
                   "--config.wandb.mode=offline")
  saved_before, ids = [], []
  for sig in (signal.SIGTERM, signal.SIGINT):
    p = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged = lambda: read_jsonl(metrics)[-1]["step"] if os.path.exists(metrics) and os.path.getsize(metrics) else 0
    start = max(saved_before, default=0)
    _wait_for(lambda: logged() > start or p.poll() is not None, what="training never started")
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err and "Run the same command again to resume from step" in err, err
    saved = steps_saved(w)
    # One checkpoint more, at the interrupted step (checkpoint_every is far away).
    assert len(saved) == len(saved_before) + 1 and saved[-1] >= logged() and saved[-1] > start
    saved_before = saved
    ids.append(open(os.path.join(w, "wandb_run_id")).read())
  assert ids[0] == ids[1]
  runs = glob.glob(os.path.join(w, "wandb", "offline-run-*"))
  assert len(runs) == 2 and all(r.endswith("-" + ids[0]) for r in runs), runs


# experiments.train with the final evaluation sending this process a signal as it starts: a
# stop after the last checkpoint, as a user's Ctrl-C or a scheduler's SIGTERM lands there.
_SIGNAL_IN_EVALUATION = """
import os, signal, sys
from encdec_jax import evaluate
plain = evaluate.evaluate
def evaluate_after_a_signal(*a, **k):
  os.kill(os.getpid(), signal.{sig})
  return plain(*a, **k)
evaluate.evaluate = evaluate_after_a_signal
from experiments import _cli, train
sys.argv = ["experiments.train"] + sys.argv[1:]
_cli.run(train.main)
"""


def test_a_stop_during_the_final_evaluation_is_one_line_and_the_same_command_finishes(tmp_path, data_dir):
  """SIGTERM or SIGINT after the last step (the final evaluation, a report, a grid) ends with one
  line saying to run the same command again and exit 143 or 130, never a traceback; run again,
  the same command finishes."""
  w = str(tmp_path / "run")
  args = _train_cmd(w, data_dir, "--config.train.steps=2", "--config.eval.judges=False")[3:]
  for sig in ("SIGTERM", "SIGINT"):
    r = subprocess.run([sys.executable, "-c", _SIGNAL_IN_EVALUATION.format(sig=sig), *args], cwd=ROOT,
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 128 + getattr(signal, sig), (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and f"stopped by {sig};" in r.stderr, r.stderr[-3000:]
    assert "Run the same command again to finish." in r.stderr and not os.path.exists(os.path.join(w, "eval.json"))
  r = subprocess.run(_train_cmd(w, data_dir, "--config.train.steps=2", "--config.eval.judges=False"),
                     cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert json.load(open(os.path.join(w, "eval.json")))["step"] == 2


def test_kill_9_at_a_random_moment_resumes_bit_exact(tmp_path, tiny_config, tiny_data, data_dir):
  """A run SIGKILLed mid-training and restarted ends with the same parameters, bit for bit, as a
  run never interrupted, and its metrics.jsonl holds every logged step exactly once."""
  steps, every = 60, 10  # the kill lands 0-0.3 s after the first checkpoint, long before step 60
  args = (f"--config.train.steps={steps}", f"--config.train.checkpoint_every={every}",
          "--config.train.log_every=1")
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  # The uninterrupted run first: the victim then reads its programs from the compilation cache
  # instead of compiling them beside it (the suite's workers already fill both cores).
  ref = subprocess.run(_train_cmd(straight, data_dir, *args), cwd=ROOT, env=_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
  assert ref.returncode == 0, ref.stderr[-3000:]
  victim = subprocess.Popen(_train_cmd(killed, data_dir, *args), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for(lambda: steps_saved(killed) or victim.poll() is not None, what="no checkpoint")
  time.sleep(random.Random(os.getpid()).uniform(0.0, 0.3))
  victim.kill()
  victim.wait()
  assert victim.returncode == -signal.SIGKILL, "the run finished before the kill: make it longer"
  at_kill = steps_saved(killed)
  assert at_kill and at_kill[-1] < steps
  resumed = subprocess.run(_train_cmd(killed, data_dir, *args), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  c = tiny_config()
  a, b = _params(c, straight, steps), _params(c, killed, steps)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  rows_a = [r for r in read_jsonl(os.path.join(straight, "metrics.jsonl")) if "train/loss" in r]
  rows_b = [r for r in read_jsonl(os.path.join(killed, "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows_b] == list(range(1, steps + 1))
  assert [r["train/loss"] for r in rows_b] == [r["train/loss"] for r in rows_a]


def test_truncated_last_metrics_line_is_dropped(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write(json.dumps({"step": 1, "a": 1}) + "\n" + json.dumps({"step": 2, "a": 2}) + "\n" + '{"step": 3, "a')
  tracking.truncate_jsonl(path, 5)
  assert [r["step"] for r in read_jsonl(path)] == [1, 2]


def test_config_change_override_and_mismatch_names_the_part(tiny_config, tmp_path):
  w = str(tmp_path)
  train.train_and_evaluate(tiny_config(**{"train.steps": 2}), w, progress=False)
  c = tiny_config(**{"train.steps": 4, "model.bottleneck": 48})
  saved = open(os.path.join(w, "config.json")).read()
  # Another network: refused even when forced, pointing at a new folder or init_from.
  for allow in (False, True):
    with pytest.raises(config_lib.ConfigError,
                       match=r"another network.*model.bottleneck \(32 -> 48\).*init_from="):
      train.train_and_evaluate(c, w, progress=False, allow_config_change=allow)
  # Another config: refused unless forced.
  c = tiny_config(**{"train.steps": 4, "data.resolution": 32})
  with pytest.raises(config_lib.ConfigError, match=r"data.resolution \(16 -> 32\).*--allow_config_change"):
    train.train_and_evaluate(c, w, progress=False)
  # Forced: the checkpoint cannot fit the new model, and the error says which part.
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"encoder.*kernel.*\(\d+, 32\)"):
    train.train_and_evaluate(c, w, progress=False, allow_config_change=True)
  assert steps_saved(w) == [2]  # nothing lost
  # ... and the failed attempt changed nothing: no config written, no change logged, so the
  # original command still resumes (a finished run, evaluated again, keeps one eval row).
  assert open(os.path.join(w, "config.json")).read() == saved
  assert not os.path.exists(os.path.join(w, "config_changes.jsonl"))
  train.train_and_evaluate(tiny_config(**{"train.steps": 2}), w, progress=False)
  evals = [r for r in read_jsonl(os.path.join(w, "metrics.jsonl")) if "eval/recon_mae" in r]
  assert [r["step"] for r in evals] == [2]
  for _ in range(2):  # asked for fewer steps than it has: evaluated again at 2, still one row
    assert train.train_and_evaluate(tiny_config(**{"train.steps": 1}), w, progress=False)["step"] == 2
  evals = [r for r in read_jsonl(os.path.join(w, "metrics.jsonl")) if "eval/recon_mae" in r]
  assert [r["step"] for r in evals] == [2]


# Orbax raises on a damaged shard and leaves its other reads pending; their coroutines complain
# when the collector frees them, which can be in a later test: pyproject.toml's filterwarnings
# ignores that one complaint wherever it lands.
def test_damaged_or_missing_checkpoints_are_named_with_the_way_out(tiny_config, tmp_path, capsys):
  w = str(tmp_path)
  c = tiny_config(**{"train.steps": 4, "train.checkpoint_every": 2})
  train.train_and_evaluate(c, w, progress=False)
  tr = Trainer(assemble.checked_config(c))
  ck = ckpt_lib.Checkpointer(w, 3)
  _, meta = ck.restore(2, tr.abstract_state)  # intact: restores; the checksums stay inside
  assert meta == {"step": 2}
  # Values that differ from the checksums taken at save time (here the record of one array's
  # checksum changed, which is the same comparison and deterministic): named damaged, with the
  # array, never left to diverge later and be blamed on the learning rate.
  meta_file = os.path.join(w, "checkpoints", "2", "meta", "metadata")
  saved_meta = open(meta_file).read()
  record = json.loads(saved_meta)
  key = next(k for k in record["checksums"] if k.startswith("params/"))
  record["checksums"][key] = "0" * 16
  open(meta_file, "w").write(json.dumps(record))
  with pytest.raises(ckpt_lib.CheckpointDamagedError,
                     match=r"step 2 .* is damaged \(its contents changed after it was saved: 1 arrays "
                           r"differ from their checksums \(params/.*no earlier checkpoint"):
    ck.restore(2, tr.abstract_state)
  # An incomplete or malformed table is damage too, never a skipped check; no table at all
  # (a checkpoint older than the tables, or from several hosts) restores, said to be unverified.
  keys = sorted(record["checksums"])
  tables = {"one entry dropped": {k: v for k, v in json.loads(saved_meta)["checksums"].items() if k != keys[0]},
            "half dropped": {k: json.loads(saved_meta)["checksums"][k] for k in keys[::2]},
            "emptied": {},
            "an extra entry": {**json.loads(saved_meta)["checksums"], "params/ghost": "0" * 16},
            "a string entry": {**json.loads(saved_meta)["checksums"], keys[0]: 12345},
            "a list": ["0" * 16], "a string": "0" * 16}
  wanted = {"one entry dropped": r"1 of its \d+ arrays have no checksum entry",
            "half dropped": r"\d+ of its \d+ arrays have no checksum entry",
            "emptied": r"\d+ of its \d+ arrays have no checksum entry",
            "an extra entry": r"its checksum table names 1 arrays it does not hold \(params/ghost\)",
            "a string entry": r"1 checksum entries are not checksums", "a list": r"its checksum table is a list",
            "a string": r"its checksum table is a str"}
  for name, table in tables.items():
    open(meta_file, "w").write(json.dumps({**json.loads(saved_meta), "checksums": table}))
    with pytest.raises(ckpt_lib.CheckpointDamagedError, match=r"step 2 .* is damaged \(" + wanted[name]):
      ck.restore(2, tr.abstract_state)
  open(meta_file, "w").write(json.dumps({k: v for k, v in json.loads(saved_meta).items() if k != "checksums"}))
  _, meta = ck.restore(2, tr.abstract_state)
  assert meta == {"step": 2} and "has no checksum table" in capsys.readouterr().err
  open(meta_file, "w").write(saved_meta)
  # Flipped bits in the data file: either its values are wrong (the checksums say so) or the read
  # fails, depending on where the bits land; either way named damaged, with the way out.
  two = max(glob.glob(os.path.join(w, "checkpoints", "2", "state", "ocdbt.process_0", "d", "*")),
            key=os.path.getsize)
  with open(two, "r+b") as f:
    f.seek(os.path.getsize(two) // 2)
    chunk = f.read(256)
    f.seek(os.path.getsize(two) // 2)
    f.write(bytes(b ^ 0x40 for b in chunk))
  with pytest.raises(ckpt_lib.CheckpointDamagedError, match=r"step 2 .* is damaged .*no earlier checkpoint"):
    ck.restore(2, tr.abstract_state)
  import wandb  # noqa: F401 - a failed restore leaves nothing that breaks a later import
  arrays = glob.glob(os.path.join(w, "checkpoints", "4", "state", "ocdbt.process_0", "d", "*"))
  big = max(arrays, key=os.path.getsize)
  open(big, "r+b").truncate(os.path.getsize(big) // 2)
  with pytest.raises(ckpt_lib.CheckpointDamagedError,
                     match=r"step 4 .* is damaged .*resume from step 2.*mv .*checkpoints/4 .*4.damaged"):
    ck.restore(4, tr.abstract_state)
  os.remove(os.path.join(w, "checkpoints", "2", "state", "_METADATA"))
  with pytest.raises(ckpt_lib.CheckpointDamagedError, match=r"_METADATA is missing"):
    ck.restore(2, tr.abstract_state)  # not "does not fit this model"
  with pytest.raises(ckpt_lib.CheckpointError, match=r"no checkpoint at step 3 .*saved steps: \[2, 4\]"):
    ck.restore(3, tr.abstract_state)
  ck.close()
  os.rename(os.path.join(w, "checkpoints", "4"), os.path.join(w, "checkpoints", "4.damaged"))
  assert ckpt_lib.Checkpointer(w, 3).latest_step() == 2  # the way out works


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_last_checkpoint(tiny_config, tmp_path, monkeypatch):
  import collections
  import shutil
  w = str(tmp_path)
  c = tiny_config(**{"train.steps": 2, "train.checkpoint_every": 2})
  train.train_and_evaluate(c, w, progress=False)
  real = shutil.disk_usage
  monkeypatch.setattr(shutil, "disk_usage", lambda p: collections.namedtuple("u", "total used free")(
      real(p).total, real(p).used, 1 << 20))  # 1 MiB left
  with pytest.raises(OSError, match=r"not enough disk space to save checkpoint step 4 .*needs about "
                                    r"\d+ MiB, 1 MiB are free.*resume with the same --workdir"):
    train.train_and_evaluate(tiny_config(**{"train.steps": 4, "train.checkpoint_every": 2}), w, progress=False)
  assert steps_saved(w) == [2] and not [d for d in os.listdir(os.path.join(w, "checkpoints")) if "tmp" in d]


def test_one_writer_per_workdir_and_a_killed_holder_never_blocks(tmp_path):
  from encdec_jax import workdir as workdir_lib
  w = str(tmp_path)
  with workdir_lib.lock(w):
    with pytest.raises(workdir_lib.WorkdirBusy, match=rf"in use by pid {os.getpid()} on host"):
      with workdir_lib.lock(w):
        pass
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from encdec_jax import workdir; "
                             "held = workdir.lock(sys.argv[1]); held.__enter__(); print('locked', flush=True); "
                             "time.sleep(600)", w], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  with pytest.raises(workdir_lib.WorkdirBusy, match=rf"pid {holder.pid}"):
    with workdir_lib.lock(w):
      pass
  holder.kill()  # kill -9: the kernel releases its lock
  holder.wait()
  with workdir_lib.lock(w):
    pass


def test_a_shared_cache_is_prepared_once_by_concurrent_runs(tmp_path):
  import threading
  from encdec_jax import cachelock
  order = []

  def prepare(name):
    with cachelock.cache_lock(str(tmp_path / "cache"), "a test cache"):
      order.append(f"{name} in")
      time.sleep(0.2)
      order.append(f"{name} out")
  threads = [threading.Thread(target=prepare, args=(n,)) for n in ("a", "b")]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_unwritable_workdir_fails_before_training(tiny_config, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(OSError, match="not writable"):
    train.train_and_evaluate(tiny_config(), str(blocker / "run"), progress=False)


def test_nothing_loaded_with_pickle():
  """Checkpoints are Orbax (tensorstore + JSON), data TFDS records and PNGs: no code path may
  unpickle a file a user hands us."""
  offenders = []
  for path in glob.glob(os.path.join(ROOT, "encdec_jax", "**", "*.py"), recursive=True) + \
      glob.glob(os.path.join(ROOT, "experiments", "**", "*.py"), recursive=True):
    text = open(path).read()
    for needle in ("import pickle", "cPickle", "allow_pickle=True", "torch.load", "dill",
                   "cloudpickle", "joblib.load"):
      if needle in text:
        offenders.append(f"{os.path.relpath(path, ROOT)}: {needle}")
  assert not offenders, offenders


def test_eval_json_is_strict_json_and_a_damaged_one_reads_as_missing(tiny_config, tmp_path):
  from encdec_jax import workdir as workdir_lib
  c = tiny_config()
  f = workdir_lib.RunFolder(str(tmp_path), c.to_dict(), assemble.checked_config(c))
  f.begin(0)
  f.write_eval({"step": 3, "eval/a": 0.5, "eval/b": float("nan"), "eval/c": float("-inf")})
  f.close()
  text = (tmp_path / "eval.json").read_text()
  ev = json.loads(text, parse_constant=lambda s: pytest.fail(f"non-strict JSON: {s}"))
  assert ev["eval/a"] == 0.5 and ev["eval/b"] is None and ev["eval/c"] is None
  assert ev["nonfinite"] == {"eval/b": "nan", "eval/c": "-inf"}
  assert workdir_lib.read_eval(str(tmp_path))["step"] == 3
  (tmp_path / "eval.json").write_text("")  # cut short by a full disk or a kill
  assert workdir_lib.read_eval(str(tmp_path)) is None


def test_a_damaged_config_json_is_one_line_naming_the_file(tiny_config, tmp_path):
  from encdec_jax import inference
  c = tiny_config()
  for text in ('{"seed": 0, "loss": "ma', "[1, 2]"):  # cut short by a kill or a full disk; not a config
    (tmp_path / "config.json").write_text(text)
    for call in (lambda: train.train_and_evaluate(c, str(tmp_path), progress=False),
                 lambda: inference.load_run(str(tmp_path))):
      with pytest.raises(config_lib.ConfigError, match=r"config.json is damaged .*move the run folder away"):
        call()
  assert not os.path.exists(tmp_path / "checkpoints")


def test_a_checkpoint_keeps_its_fields_and_an_averaged_run_adds_only_its_average(tmp_path):
  """The saved tree of a run without train.ema has exactly the fields checkpoints always had (a
  field more, even one left None, is a node of the tree, and checkpoints written before it then
  no longer restore); a run with it adds `ema` and nothing else. Both restore."""
  import orbax.checkpoint as ocp
  from encdec_jax.state import AveragedTrainState, TrainState
  z = np.zeros((), np.int32)
  plain = TrainState(step=z, params={"w": np.ones(3, np.float32)}, opt_state={"mu": np.zeros(3, np.float32)},
                     nonfinite=z, first_nonfinite=z - 1)
  averaged = AveragedTrainState(**vars(plain), ema={"w": np.full(3, 0.5, np.float32)})
  for name, state in (("plain", plain), ("averaged", averaged)):
    ck = ckpt_lib.Checkpointer(str(tmp_path / name), 2)
    ck.save(1, state, {"step": 1})
    ck.close()
    meta = ocp.StandardCheckpointer().metadata(str(tmp_path / name / "checkpoints" / "1" / "state"))
    tree = getattr(meta, "item_metadata", meta)
    want = {"step", "params", "opt_state", "nonfinite", "first_nonfinite"} | ({"ema"} if name == "averaged" else set())
    assert set(tree.keys()) == want, name
    ck = ckpt_lib.Checkpointer(str(tmp_path / name), 2)
    got, _ = ck.restore(1, jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), state))
    ck.close()
    assert type(got) is type(state)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(state)):
      np.testing.assert_array_equal(np.asarray(x), y)
