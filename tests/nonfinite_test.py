"""A NaN or Inf in training: the run stops on the step (its last good checkpoint kept) or skips it,
and says which terms went bad; non-finite settings are refused before it starts."""
import json
import os

import jax
import numpy as np
import pytest

from encdec_jax import config as config_lib, train
from encdec_jax.data.pipeline import TrainSource
from tests.helpers import read_jsonl, restored_state, steps_saved


def _nan_at(step_to_poison):
  original = TrainSource.batch

  def batch(self, step):
    b = original(self, step)
    if step == step_to_poison:
      b["inputs"] = b["inputs"] * np.float32("nan")
    return b
  return batch


def test_nan_stops_with_step_and_terms_and_keeps_last_checkpoint(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setattr(TrainSource, "batch", _nan_at(7))  # the 8th step (0-based batch 7)
  c = tiny_config(**{"train.steps": 20, "train.checkpoint_every": 5, "train.log_every": 100,
                     "train.preview_every": 100})
  with pytest.raises(train.NonFiniteError, match=r"at step 8 .*train/loss=nan.*train/mae=nan.*\(step 5\) is untouched.*lower config.train.lr"):
    train.train_and_evaluate(c, str(tmp_path), progress=False)
  assert steps_saved(str(tmp_path)) == [5]
  state = restored_state(c, str(tmp_path), 5)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  assert int(state.nonfinite) == 0
  # The remedy the message gives, a lower learning rate, resumes the run (logged as a change);
  # any other change is still refused.
  with pytest.raises(config_lib.ConfigError, match=r"train.batch_size.*only train.b1, train.b2, train.lr"):
    train.train_and_evaluate(tiny_config(**{"train.steps": 20, "train.batch_size": 2}), str(tmp_path))
  monkeypatch.undo()  # the data is clean again
  c.train.lr = 1e-4
  assert train.train_and_evaluate(c, str(tmp_path), progress=False)["step"] == 20
  changes = read_jsonl(str(tmp_path / "config_changes.jsonl"))
  assert [r["changed"] for r in changes] == [{"train.lr": [1e-3, 1e-4]}]
  assert json.load(open(tmp_path / "config.json"))["train"]["lr"] == 1e-4
  with pytest.raises(config_lib.ConfigError, match=r"train.lr \(0.0001 -> 0.001\)"):  # no stop now
    train.train_and_evaluate(tiny_config(**{"train.steps": 20}), str(tmp_path), progress=False)


def test_nan_before_any_checkpoint_says_the_run_starts_again(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setattr(TrainSource, "batch", _nan_at(1))
  c = tiny_config(**{"train.steps": 6, "train.checkpoint_every": 5, "train.log_every": 100,
                     "train.preview_every": 100})
  with pytest.raises(train.NonFiniteError, match=r"at step 2 .*No checkpoint was saved before it") as e:
    train.train_and_evaluate(c, str(tmp_path), progress=False)
  assert "untouched" not in str(e.value) and steps_saved(str(tmp_path)) == []


def test_nan_skip_mode_counts_and_goes_on(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setattr(TrainSource, "batch", _nan_at(3))
  c = tiny_config(**{"train.steps": 10, "train.nonfinite": "skip"})
  final = train.train_and_evaluate(c, str(tmp_path), progress=False)
  assert final["train/nonfinite_steps"] == 1 and np.isfinite(final["eval/recon_mae"])
  state = restored_state(c, str(tmp_path), 10)
  assert int(state.nonfinite) == 1 and int(state.first_nonfinite) == 3
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_a_run_that_skipped_most_steps_is_failed_not_finished(tiny_config, tmp_path, monkeypatch):
  original = TrainSource.batch

  def batch(self, step):  # diverged from step 2 on: every later step is skipped
    b = original(self, step)
    if step >= 2:
      b["inputs"] = b["inputs"] * np.float32("nan")
    return b
  monkeypatch.setattr(TrainSource, "batch", batch)
  c = tiny_config(**{"train.steps": 10, "train.nonfinite": "skip"})
  with pytest.raises(train.NonFiniteError, match=r"8 of 10 steps were non-finite and skipped .*new --workdir"):
    train.train_and_evaluate(c, str(tmp_path), progress=False)
  assert not os.path.exists(tmp_path / "eval.json")  # so a sweep reports it failed
  assert "8 of 10" in json.load(open(tmp_path / "nonfinite_stop.json"))["error"]
  assert train.unfinished({"step": 10, "eval/a": float("nan")}, "w").startswith("the evaluation at step 10 is not finite (eval/a)")
  assert train.unfinished({"step": 10, "train/nonfinite_steps": 5, "eval/a": 1.0}, "w") is None


def test_non_finite_hyperparameters_are_refused_at_start(tiny_config, tmp_path):
  for key, value in (("train.lr", float("inf")), ("train.b1", float("nan"))):
    with pytest.raises(config_lib.ConfigError, match=rf"config.{key}=(inf|nan); must be a finite number"):
      train.train_and_evaluate(tiny_config(**{key: value}), str(tmp_path), progress=False)
  assert not os.path.exists(tmp_path / "checkpoints")
