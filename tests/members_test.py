"""Members: runs of one sweep trained as one vmapped program (encdec_jax/members.py)."""
import json
import os
import re

import jax
import numpy as np
import pytest

from encdec_jax import assemble, config as config_lib, members
from encdec_jax.data.pipeline import Augment, TrainSource
from tests.helpers import init_params, read_jsonl, train_steps

STEPS = 20
# Every field that may vary, against the tiny config (MAE, no mask, bottleneck 32): the padded
# bottleneck alone; the rest two by two kinds (a run alone costs a compile, and the suite's time).
# The last also has a swap term (losses/swap.py), which the others weight by 0.
VARIANTS = [{}, {"seed": 1, "train.lr": 3e-3, "train.b1": 0.9, "train.b2": 0.99, "train.warmdown": 0.5,
                 "train.clip_norm": 0.05},
            {"model.bottleneck": 16},
            {"loss": "mae:0.5,mse:2.0,swap_tone:1.5", "mask.enabled": True, "mask.eye_multiplier": 4.0,
             "mask.mouth_multiplier": 3.0, "mask.learned_weight": 0.5}]


@pytest.fixture(scope="module")
def group_run(tiny_data, data_dir):
  from experiments.configs import original
  # train.ema on for all (not a member field): each member keeps its own average, as its run would.
  base = config_lib.override(original.get_config("tiny"), {"data.dir": data_dir, "train.ema": 0.8})
  cds = [config_lib.override(base, v) for v in VARIANTS]
  cfgs = [assemble.checked_config(c) for c in cds]
  g = members.Group(cfgs)
  trn, _ = tiny_data
  srcs = {s: TrainSource(trn["image"], trn["mask"], trn["identity"], 2, 4, s,
                         Augment.from_config(cfgs[0].data)) for s in (0, 1)}
  state, losses = g.init(), []
  for step in range(STEPS):
    state, m = g.step_fn(state, g.device_batch([srcs[c.seed].batch(step) for c in cfgs]), g.hyper)
    losses.append(m["train/loss"])
  assert g.step_fn._cache_size() == 1  # one compiled program for all the settings
  return cds, g, state, np.asarray(jax.device_get(losses))


@pytest.mark.parametrize("i", range(len(VARIANTS)), ids=[",".join(v) or "base" for v in VARIANTS])
def test_a_member_trains_as_the_same_setting_run_alone(group_run, tiny_data, i):
  """Same first loss (same init, batch and function), the same loss curve and parameters to the
  float tolerance that Adam's normalisation leaves after 20 steps."""
  cds, g, state, losses = group_run
  _, alone, alone_losses = train_steps(cds[i], tiny_data[0], STEPS)
  assert abs(losses[0, i] - alone_losses[0]) < 1e-5 * abs(alone_losses[0])
  np.testing.assert_allclose(losses[:, i], alone_losses, rtol=2e-3)
  mine = g.member_state(state, i)
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
  a, b = flat(alone.params), flat(mine.params)
  assert np.linalg.norm(a - b) / np.linalg.norm(a) < 8e-3  # 5.3e-3 measured for the base setting
  a, b = flat(alone.ema), flat(mine.ema)
  assert np.linalg.norm(a - b) / np.linalg.norm(a) < 8e-3
  assert not np.allclose(flat(mine.ema), flat(mine.params))  # the average lags the params
  # What evaluation reads is the average, at the group's size.
  used = flat(g.member_params(state, i))
  assert used.size == flat(jax.tree.map(lambda x: x[i], state.params)).size
  np.testing.assert_array_equal(used, flat(jax.tree.map(lambda x: np.asarray(x[i]), state.ema)))
  assert [x.shape for x in jax.tree.leaves(alone)] == [x.shape for x in jax.tree.leaves(mine)]


def test_a_bottleneck_member_is_a_k_sized_model_and_its_padding_stays_zero(group_run):
  cds, g, state, _ = group_run
  i = VARIANTS.index({"model.bottleneck": 16})
  assert g.k_max == 32
  p = jax.tree.map(lambda x: np.asarray(x[i]), state.params)["params"]["encoder"]
  assert p["bottleneck"]["kernel"].shape == (64, 32)
  assert not p["bottleneck"]["kernel"][:, 16:].any() and not p["bottleneck"]["bias"][16:].any()
  assert not p["Dense_0"]["kernel"][16:].any()
  mu = jax.tree.map(lambda x: np.asarray(x[i]), state.opt_state[0].mu)["params"]["encoder"]
  assert not mu["bottleneck"]["kernel"][:, 16:].any() and p["bottleneck"]["kernel"][:, :16].all()
  e = jax.tree.map(lambda x: np.asarray(x[i]), state.ema)["params"]["encoder"]  # train.ema's average
  assert not e["bottleneck"]["kernel"][:, 16:].any() and e["bottleneck"]["kernel"][:, :16].all()
  # Its initialisation is the k-sized model's with its own seed (fan-in 16 for the second Dense).
  a = g.members[i]
  own = init_params(a.model, a.cfg.model)
  for x, y in zip(jax.tree.leaves(own), jax.tree.leaves(g.member_state(g.init(), i).params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_warp_strength_is_a_member_field_each_member_warped_as_its_run(tiny_config, tiny_data):
  from encdec_jax.program import train_source
  overrides = ({}, {"data.warp_scale": 0.1}, {"data.warp_scale": 0.0}, {"data.input_jitter": 0.3},
               {"data.warp_scale": 0.1, "data.warp_anneal": 4})
  cfgs = [assemble.checked_config(tiny_config(**o)) for o in overrides]
  assert members.group_runs(cfgs, 8) == [[0, 1, 2, 3, 4]]
  g = members.Group(cfgs)
  trn, _ = tiny_data
  got = jax.device_get(next(g.batches(trn, 3)))
  for i, c in enumerate(cfgs):
    alone = train_source(c, trn, c.seed).batch(3)
    for k in ("inputs", "targets"):
      np.testing.assert_allclose(got[k][i], alone[k], atol=1e-6)
  np.testing.assert_array_equal(got["targets"][0], got["targets"][1])  # the same images, flips
  d = lambda i, j: np.abs(got["inputs"][i] - got["inputs"][j]).mean()
  assert d(1, 2) > d(0, 2) > 0  # warped by the member's own strength; 0: unwarped
  np.testing.assert_allclose(got["inputs"][2], got["targets"][2], atol=1e-6)
  # input_jitter: the same targets as the plain member, inputs recoloured
  np.testing.assert_array_equal(got["targets"][3], got["targets"][0])
  assert np.abs(got["inputs"][3] - got["inputs"][0]).mean() > 0.02
  # warp_anneal: its own pipeline, at step 3 of 4 a quarter of member 1's warp
  assert 0 < d(4, 2) < 0.5 * d(1, 2)


def test_groups_are_runs_that_differ_only_in_member_fields(tiny_config):
  c = lambda **o: assemble.checked_config(tiny_config(**o))
  cfgs = [c(), c(seed=1), c(**{"model.bottleneck": 8}), c(**{"data.resolution": 32}),
          c(**{"model.arch": "df", "model.bottleneck": 8}), c(**{"model.arch": "df", "model.bottleneck": 16}),
          c(**{"train.lr": 1e-4, "wandb.name": "x"})]
  assert members.group_runs(cfgs, 8) == [[0, 1, 2, 6], [3], [4], [5]]  # df's bottleneck sets channels
  assert members.group_runs(cfgs, 2) == [[0, 1], [2, 6], [3], [4], [5]]
  with pytest.raises(ValueError, match="differ only in"):
    members.Group([cfgs[0], cfgs[3]])
  # The memory estimate: 8 tiny members fit this machine; none beyond one fits a tiny budget.
  assert members.auto_max_members(cfgs[0]) == members.DEFAULT_MAX
  assert members.auto_max_members(cfgs[0], budget=1e-9) == 1


def test_a_diverging_member_fails_alone_and_the_others_finish(tiny_config, tmp_path):
  """lr=1e30 diverges at once: that member is reported failed, keeps no checkpoint after its
  last good step and is marked for a resume with a lower lr; the other finishes and evaluates."""
  from encdec_jax import train, workdir as workdir_lib
  over = {"train.steps": 6, "train.checkpoint_every": 2, "train.log_every": 5, "eval.judges": False,
          "eval.every": 2}
  cds = [tiny_config(**over), tiny_config(**over, **{"train.lr": 1e30})]
  ws = [str(tmp_path / "good"), str(tmp_path / "bad")]
  out = train.train_runs(cds, ws, progress=False)
  assert out[0]["step"] == 6 and np.isfinite(out[0]["eval/swap_face_mae"])
  assert isinstance(out[1], train.NonFiniteError) and "non-finite" in str(out[1])
  assert (tmp_path / "good" / "eval.json").exists() and not (tmp_path / "bad" / "eval.json").exists()
  assert (tmp_path / "bad" / workdir_lib.NONFINITE_STOP).exists()
  evals = [r["step"] for r in read_jsonl(str(tmp_path / "good" / "metrics.jsonl"))
           if "eval/swap_face_mae" in r]
  assert evals == [2, 4, 6]  # eval.every, then the final evaluation
  from encdec_jax import checkpoint as ckpt_lib
  steps = []
  for w in ws:
    ck = ckpt_lib.Checkpointer(w, 3)
    steps.append(ck.all_steps())
    ck.close()
  assert steps[0] == [2, 4, 6] and steps[1] in ([], [2])  # nothing after the bad step


def test_kill_9_of_a_group_resumes_every_member_bit_exact(tmp_path, data_dir):
  """A sweep whose two members (seeds 0 and 1) are SIGKILLed mid-training and restarted ends with
  the same parameters, bit for bit, as a sweep never interrupted; each member's metrics.jsonl
  holds every logged step once."""
  import os
  import random
  import signal
  import subprocess
  import sys
  import time

  import yaml
  from tests.helpers import restored_state
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  steps = 50  # the kill lands 0-0.5 s after the first checkpoint, long before step 50
  spec = {"method": "grid", "parameters": {"config.seed": {"values": [0, 1]}},
          "command": [f"--config={root}/experiments/configs/original.py:tiny"]}
  (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
  cmd = lambda out: [sys.executable, "-m", "experiments.sweep", f"--sweep={tmp_path / 's.yaml'}",
                     f"--workdir={out}", f"--set=data.dir={data_dir}", f"--set=train.steps={steps}",
                     "--set=train.checkpoint_every=10", "--set=train.log_every=1", "--set=eval.judges=False"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  # The uninterrupted sweep first: the victim then reads the group's program from the compilation
  # cache instead of compiling it beside it (the suite's workers already fill both cores).
  ref = subprocess.run(cmd(straight), cwd=root, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=600)
  assert ref.returncode == 0, ref.stderr[-3000:]
  victim = subprocess.Popen(cmd(killed), cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  ckpts = killed / "01_seed=1" / "checkpoints"
  t = time.time()
  while not (ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())) and victim.poll() is None:
    assert time.time() - t < 300, "no checkpoint"
    time.sleep(0.05)
  time.sleep(random.Random(os.getpid()).uniform(0.0, 0.5))
  victim.kill()
  victim.wait()
  assert victim.returncode == -signal.SIGKILL, "the group finished before the kill: make it longer"
  resumed = subprocess.run(cmd(killed), cwd=root, env=env, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "as 2 members of one program" in resumed.stdout
  from experiments.configs import original
  for run, seed in (("00_seed=0", 0), ("01_seed=1", 1)):
    c = config_lib.override(original.get_config("tiny"), {"seed": seed, "train.steps": steps})
    a, b = restored_state(c, str(straight / run), steps), restored_state(c, str(killed / run), steps)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    logged = [r["step"] for r in read_jsonl(str(killed / run / "metrics.jsonl")) if "train/loss" in r]
    assert logged == list(range(1, steps + 1)), run


def _nan_for_seed(seed, at):
  """TrainSource.batch with NaN inputs in the batch `at` of the source with `seed`."""
  original = TrainSource.batch

  def batch(self, step):
    b = original(self, step)
    if self.seed == seed and step == at:
      b["inputs"] = b["inputs"] * np.float32("nan")
    return b
  return batch


def test_a_group_writes_what_a_run_writes(tiny_config, tmp_path, monkeypatch):
  """The outcomes that once differed between a group and a run (they trained in two loops):
  a diverging member's error names the loss terms; a member that skipped steps says so in its
  eval.json; a group evaluated again logs each evaluation once."""
  from encdec_jax import train
  over = {"train.steps": 6, "train.log_every": 1, "eval.judges": False}
  monkeypatch.setattr(TrainSource, "batch", _nan_for_seed(1, 2))
  cds = [tiny_config(**over), tiny_config(**over, seed=1)]
  out = train.train_runs(cds, [str(tmp_path / "stop0"), str(tmp_path / "stop1")], progress=False)
  assert out[0]["step"] == 6 and "train/nonfinite_steps" not in out[0]
  assert isinstance(out[1], train.NonFiniteError)
  assert re.search(r"at step 3 .*train/loss=nan.*train/mae=nan.*lower config.train.lr", str(out[1])), out[1]
  skip = [tiny_config(**over, **{"train.nonfinite": "skip"}), tiny_config(**over, seed=1, **{"train.nonfinite": "skip"})]
  ws = [str(tmp_path / "skip0"), str(tmp_path / "skip1")]
  out = train.train_runs(skip, ws, progress=False)
  evals = [json.load(open(os.path.join(w, "eval.json"))) for w in ws]
  assert "train/nonfinite_steps" not in evals[0] and evals[1]["train/nonfinite_steps"] == 1
  monkeypatch.undo()
  for w in ws:
    os.remove(os.path.join(w, "eval.json"))
  train.train_runs(skip, ws, progress=False)
  for w in ws:
    rows = [r["step"] for r in read_jsonl(os.path.join(w, "metrics.jsonl")) if "eval/recon_mae" in r]
    assert rows == [6], (w, rows)


def test_member_hyperparameters_have_a_member_axis_even_for_one_member(tiny_config):
  """A group of one (bench --members=1) still passes arrays with a leading member axis; one run's
  are python constants, and only one config makes one run."""
  from encdec_jax import losses, step
  c = assemble.checked_config(tiny_config())
  terms = losses.parse_loss_spec(c.loss)
  one = step.hyperparameters([c], terms, members=True)
  assert one["lr"].shape == (1,) and one["loss"]["term_weights"].shape == (1, len(terms))
  run = step.hyperparameters([c], terms, members=False)
  assert run["lr"] == c.train.lr and run["loss"]["term_weights"] == tuple(t.weight for t in terms)
  with pytest.raises(ValueError, match="need one config, got 2"):
    step.hyperparameters([c, c], terms, members=False)
