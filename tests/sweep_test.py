"""Local sweeps (encdec_jax/sweep.py): enumeration, run names and refusals, grouping, the tiny
sweep end to end with its report, and the agent-style train CLI. The report's parts on hand-made
results: tests/report_test.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from encdec_jax import config as config_lib, sweep
from experiments.configs import original

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_random_sweeps_stop_at_run_cap_and_propose_the_same_runs_again():
  spec = {"method": "random", "run_cap": 3,
          "parameters": {"config.model.bottleneck": {"values": [8, 16]}, "config.train.lr": {
              "distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}}
  runs = sweep.enumerate_runs(spec)
  assert len(runs) == 3 and all(1e-4 <= r["config.train.lr"] <= 1e-2 for r in runs)
  # A re-run (same seed) continues the same run list; another seed draws others.
  assert sweep.enumerate_runs(spec) == runs
  assert sweep.enumerate_runs(spec, seed=1) != runs
  import random
  state = random.getstate()
  sweep.enumerate_runs(spec)
  assert random.getstate() == state  # the caller's generator is left as it was


@pytest.mark.parametrize("field,dist", [
    ("config.train.lr", {"distribution": "uniform", "min": 1e-4, "max": 1e-3}),
    ("config.train.lr", {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}),
    ("config.model.bottleneck", {"distribution": "q_uniform", "min": 8, "max": 64, "q": 8}),
    ("config.model.bottleneck", {"distribution": "int_uniform", "min": 8, "max": 64}),
    ("config.mask.eye_multiplier", {"distribution": "q_log_uniform_values", "min": 1, "max": 30, "q": 1}),
])
def test_random_sweep_proposals_of_every_distribution_make_valid_configs(field, dist):
  """The engine proposes numpy float64/int64: each proposal must pass the config's type check."""
  from encdec_jax import assemble
  runs = sweep.enumerate_runs({"method": "random", "run_cap": 3, "parameters": {field: dist}})
  assert len(runs) == 3
  for r in runs:
    assert type(r[field]) in (int, float)
    cfg = assemble.checked_config(config_lib.override(original.get_config("small"), r))
    section, name = field.split(".")[1:]
    assert getattr(getattr(cfg, section), name) == r[field]


def test_yaml_and_set_numbers_are_numbers_and_bad_yaml_is_one_line(tmp_path):
  path = tmp_path / "s.yaml"
  path.write_text("method: grid\nparameters:\n  config.train.lr:\n    values: [1e-3, 2.5E-4]\n")
  spec = sweep.load_sweep(str(path))
  assert spec["parameters"]["config.train.lr"]["values"] == [1e-3, 2.5e-4]
  c = config_lib.override(original.get_config("tiny"), {"config.train.lr": "1e-4",
                                                          "config.model.bottleneck": "12"})
  assert c.train.lr == 1e-4 and c.model.bottleneck == 12
  with pytest.raises(config_lib.ConfigError, match=r"config.train.lr='fast': expected float"):
    config_lib.override(original.get_config("tiny"), {"config.train.lr": "fast"})
  for text, message in (("method: grid\nparameters: {config.x: [", "is not valid YAML"),
                        ("method: grid\nparameters:\n  config.train.lr:\n    values: []\n",
                         "'config.train.lr' has empty or non-list 'values'"),
                        ("method: bayes\nparameters:\n  config.train.lr:\n    values: [1]\n",
                         "a bayes sweep needs a 'metric'")):
    path.write_text(text)
    with pytest.raises(sweep.SweepError, match=message):
      sweep.load_sweep(str(path))


def test_a_diverging_run_is_reported_failed_and_the_sweep_goes_on(tmp_path, monkeypatch):
  """train_runs stands in: the bottleneck-8 run diverges, the others finish."""
  from encdec_jax import train
  spec = {"name": "t", "method": "grid", "parameters": {"config.model.bottleneck": {"values": [8, 16, 24]}},
          "metric": {"name": "eval/swap_face_mae", "goal": "minimize"},
          "command": [f"--config={ROOT}/experiments/configs/original.py:tiny"]}
  path = tmp_path / "s.yaml"
  path.write_text(yaml.safe_dump(spec))

  def fake(cfgs, workdirs, progress=True):
    (cfg,) = cfgs
    if cfg.model.bottleneck == 8:
      return [train.NonFiniteError("non-finite loss or gradient at step 3. The last checkpoint ...")]
    return [{"step": cfg.train.steps, "eval/swap_face_mae": cfg.model.bottleneck / 100}]
  monkeypatch.setattr(train, "train_runs", fake)
  results = sweep.run_sweep(str(path), str(tmp_path / "out"), progress=False, max_members=1)
  assert [r.get("status") for r in results] == ["failed", None, None]
  report = (tmp_path / "out" / "report.md").read_text()
  assert "**1 run(s) failed**" in report and "non-finite loss or gradient at step 3" in report
  assert "Best by `eval/swap_face_mae` (minimize, the sweep's metric): **01_bottleneck=16**, 0.1600" in report


def test_a_finished_run_evaluated_again_is_not_grouped_with_new_runs(tmp_path, monkeypatch):
  """A finished run whose eval.* settings changed is to be evaluated again, not trained: it goes
  into a group of its own, which resumes at its last step. Beside a new run it would have
  started from step 0 with it (a group resumes from the step all its members saved), dropping
  its metrics and reporting its old eval.json under the new settings if stopped."""
  from encdec_jax import train, workdir as workdir_lib
  spec = {"name": "t", "method": "grid", "parameters": {"config.model.bottleneck": {"values": [8, 16]},
                                                        "config.eval.code_match": {"value": "train"}},
          "metric": {"name": "eval/swap_face_mae", "goal": "minimize"},
          "command": [f"--config={ROOT}/experiments/configs/original.py:tiny"]}
  path = tmp_path / "s.yaml"
  path.write_text(yaml.safe_dump(spec))
  out = tmp_path / "out"
  old = config_lib.override(original.get_config("tiny"), {"model.bottleneck": 8, "train.steps": 4})
  first = out / "00_bottleneck=8"
  (first / "checkpoints" / "4").mkdir(parents=True)  # finished, evaluated without the code matching
  workdir_lib.write_json(str(first / "config.json"), old.to_dict())
  workdir_lib.write_json(str(first / "eval.json"), {"step": 4, "eval/swap_face_mae": 0.5})
  calls = []

  def fake(cfgs, workdirs, progress=True):
    calls.append([os.path.basename(w) for w in workdirs])
    return [{"step": c.train.steps, "eval/swap_face_mae": c.model.bottleneck / 100} for c in cfgs]
  monkeypatch.setattr(train, "train_runs", fake)
  sweep.run_sweep(str(path), str(out), progress=False, config_overrides={"config.train.steps": 4})
  assert calls == [["00_bottleneck=8"], ["01_bottleneck=16"]]


def test_tiny_sweep_end_to_end_writes_report(tmp_path, data_dir, monkeypatch):
  spec = {"name": "t", "method": "grid", "metric": {"name": "eval/swap_mae", "goal": "minimize"},
          "parameters": {"config.model.bottleneck": {"values": [8, 16]},
                         "config.loss": {"values": ["mae:1.0", "ssim:1.0,robust(alpha=0,scale=0.1):0.5"]},
                         "config.train.log_every": {"value": 2},  # a constant: no name, no column
                         "config.eval.tone": {"value": "train"},
                         "config.eval.code_match": {"value": "train"}},
          "command": ["${env}", "python", "-m", "experiments.train",
                      f"--config={ROOT}/experiments/configs/original.py:tiny", "${args}"]}
  path = tmp_path / "s.yaml"
  path.write_text(yaml.safe_dump(spec))
  out = tmp_path / "out"
  from encdec_jax import calibration
  calls = []  # each run's colour shifts: once for its final step's preview and evaluation together
  calibrate = calibration.calibrate_params  # ... on its swaps with the code matched (eval.code_match)
  monkeypatch.setattr(calibration, "calibrate_params", lambda *a, **k: calls.append(k["code"]) or calibrate(*a, **k))
  results = sweep.run_sweep(str(path), str(out), progress=False, config_overrides={
      "config.data.dir": data_dir, "config.train.steps": 4})
  assert len(results) == 4 and not any("log_every" in r["run"] for r in results)
  assert len(calls) == 4 and all(c is not None and c[0].shape[0] == 2 for c in calls)
  assert {(r["config.model.bottleneck"], r["config.loss"]) for r in results} == {
      (8, "mae:1.0"), (16, "mae:1.0"), (8, "ssim:1.0,robust(alpha=0,scale=0.1):0.5"),
      (16, "ssim:1.0,robust(alpha=0,scale=0.1):0.5")}
  for f in ("results.csv", "results.md", "swap_face_mae.png", "attr_mae.png", "id_transfer.png"):
    assert (out / f).exists(), f
  header = (out / "results.csv").read_text().splitlines()[0].split(",")
  assert header.index("eval/pose_mae_se") == header.index("eval/pose_mae") + 1, header
  md = (out / "results.md").read_text()
  assert "![swap_face_mae](swap_face_mae.png)" in md
  report = (out / "report.md").read_text()
  heads = ("| run | loss | model.bottleneck | swap_face_mae | swap_mae | swap_face_ssim | id_transfer | id_leak "
           "| attr_mae | expr_mae | pose_mae |")  # 16 px crops of 32 px frames: the judge reads some expression
  assert heads in report, report
  factor_head = ("| factor | judge's floor | the true face swaps | the true swap's crop, pasted "
                 "| a perfect decoder j | guessing the mean | runs' mean error | signed, 0to1 | signed, 1to0 "
                 "| a perfect decoder j, signed, 0to1 | a perfect decoder j, signed, 1to0 |")
  assert factor_head in report, report
  # The signed columns: the mean over runs of each run's eval.json signed error in that direction.
  evs = [json.loads((out / r["run"] / "eval.json").read_text()) for r in results]
  lines_ = report.splitlines()
  k = lines_.index(factor_head) + 2
  signed = lambda v: f"{0.0 if abs(v) < 0.005 else v:+.2f}"  # noqa: E731 - the report prints no -0.00
  for ln in lines_[k:k + 7]:
    cells = [c.strip() for c in ln.strip("|").split("|")]
    for d, got, ideal in zip(("0to1", "1to0"), cells[7:9], cells[9:]):
      assert got == signed(np.mean([e[f'eval/attr_bias/{cells[0]}/{d}'] for e in evs])), (cells, d)
      assert ideal == signed(np.mean([e[f'eval/attr_bias_ideal/{cells[0]}/{d}'] for e in evs])), (cells, d)
    assert cells[3] == f"{np.mean([e[f'eval/attr_err_pasted/{cells[0]}'] for e in evs]):.2f}", cells
    assert cells[4] == f"{np.mean([e[f'eval/attr_err_ideal/{cells[0]}'] for e in evs]):.2f}", cells
  # How the swaps follow the source: the runs' mean correlation per direction, and the ideal's.
  corr_head = ("| factor | runs, 0to1 | runs, 1to0 | standard error | a perfect decoder j, 0to1 "
               "| a perfect decoder j, 1to0 |")
  k = lines_.index(corr_head) + 2
  for ln in lines_[k:k + 7]:
    cells = [c.strip() for c in ln.strip("|").split("|")]
    for got, (key, d) in zip(cells[1:3] + cells[4:], [(key, d) for key in ("attr_corr", "attr_corr_ideal")
                                                      for d in ("0to1", "1to0")]):
      assert got == signed(np.mean([e[f"eval/{key}/{cells[0]}/{d}"] for e in evs])), (cells, key, d)
    assert cells[3] == f"{np.mean([e[f'eval/attr_corr/{cells[0]}_se'] for e in evs]):.2f}", cells
  # Every cell of the report's table is the run's own eval.json, to the printed precision, with its
  # standard error over the held-out faces.
  lines = report.splitlines()
  first = next(k for k, ln in enumerate(lines) if ln.startswith(heads)) + 2
  rows = lines[first:first + 4]
  cols = [c.strip() for c in heads.strip("|").split("|")]
  assert len(rows) == 4
  for ln in rows:
    cells = dict(zip(cols, (c.strip() for c in ln.strip("|").split("|"))))
    ev = json.loads((out / cells["run"] / "eval.json").read_text())
    for c in cols[3:]:
      assert cells[c] == f"{ev['eval/' + c]:.4f} ± {ev['eval/' + c + '_se']:.4f}", (c, cells[c], ev["eval/" + c])
  # Each setting against the best by the sweep's metric, on the same faces: the difference of
  # the runs' eval.json means, with its errors (one seed each: none over seeds).
  from encdec_jax import workdir as wd
  assert all(wd.read_samples(str(out / r["run"]), r["step"]) is not None for r in results)
  assert wd.read_samples(str(out / results[0]["run"]), results[0]["step"] + 1) is None  # another step's
  section = report.split("## Against the best setting, on the same faces", 1)[1]
  best = min(results, key=lambda r: r["eval/swap_mae"])
  rows = [ln for ln in section.splitlines() if ln.startswith("| loss=")]
  assert len(rows) == 3, section
  head = [c.strip() for c in section.splitlines()[4].strip("|").split("|")]
  for ln in rows:
    cells = dict(zip(head, (c.strip() for c in ln.strip("|").split("|"))))
    other = next(r for r in results if cells["setting"] == f"loss={r['config.loss']}, bottleneck={r['config.model.bottleneck']}")
    diff = other["eval/swap_mae"] - best["eval/swap_mae"]
    assert cells["swap_mae"].startswith(f"{diff:+.4f} ± ") and cells["swap_mae"].endswith("/ 0.0000"), cells
  ev = json.loads((out / results[0]["run"] / "eval.json").read_text())  # eval.tone=train
  assert {"eval/tone_shift/0to1", "eval/swap_tone_gap_uncalibrated", "eval/id_transfer_uncalibrated"} <= set(ev)
  first = out / results[0]["run"]
  stored = json.loads((first / "tone.json").read_text())["4"]  # for the grid, swaps
  assert np.mean(stored["shifts"][0][1]) == pytest.approx(ev["eval/tone_shift/0to1"], abs=1e-6)
  from encdec_jax import workdir as workdir_lib  # tied to the checkpoint it was computed from
  assert stored["step"] == 4 and stored["config_sha256"] == workdir_lib.config_hash((first / "config.json").read_bytes())
  assert "![swap grid](swap_grid.png)" in report and "Every setting ran with one seed" in report
  assert "`eval.code_match=train`: its code matched" in report
  assert "identity accuracy" in report and "judge's floor" in report
  assert "## Why the swaps fail (or not)" in report and "| probe_id_accuracy |" in report
  from PIL import Image
  grid = Image.open(out / "swap_grid.png")
  assert grid.info.get("Software") == "encdec_jax" and "Synthetic" in grid.info.get("Description", "")
  assert grid.info.get("encdec_jax:synthetic") == "true"  # as every image of a model's output
  # Re-running reads finished runs instead of training them again...
  # ... and a damaged tone.json (a 1x1 table) is calibrated again for the grid, never used.
  mtime = os.path.getmtime(out / results[0]["run"] / "eval.json")
  (first / "tone.json").write_text(json.dumps({"4": {**stored, "shifts": [[[0.0, 0.0, 0.0]]]}}))
  (out / "swap_grid.png").unlink()
  sweep.run_sweep(str(path), str(out), progress=False, config_overrides={
      "config.data.dir": data_dir, "config.train.steps": 4})
  assert os.path.getmtime(out / results[0]["run"] / "eval.json") == mtime
  assert (out / "swap_grid.png").exists() and (out / "results.csv").exists()
  # ... but never reports them for another config: refused, naming the fields, before training.
  with pytest.raises(sweep.SweepError, match=r"holds a run of another config \(train.lr \(0.001 -> 0.05\)\)"):
    sweep.run_sweep(str(path), str(out), progress=False, config_overrides={
        "config.data.dir": data_dir, "config.train.steps": 4, "config.train.lr": 0.05})
  assert os.path.getmtime(out / results[0]["run"] / "eval.json") == mtime
  # A run whose checkpoints are gone is named in the report's grid section, not silently dropped;
  # the grid takes its faces from the next run that loads.
  from encdec_jax import report as report_lib
  (first / "checkpoints").rename(first / "moved")
  try:
    grid_path, left_out = report_lib.swap_grid(results, str(out))
  finally:
    (first / "moved").rename(first / "checkpoints")
  assert grid_path is not None and len(left_out) == 1 and left_out[0].startswith(f"{results[0]['run']}: "), left_out


def test_run_names_tell_apart_keys_with_the_same_last_part():
  assert sweep.run_name(3, {"config.data.seed": 0, "config.seed": 1}) == "03_data.seed=0_seed=1"
  assert sweep.run_name(0, {"config.model.bottleneck": 16, "config.loss": "ssim:1.0"}) == "00_bottleneck=16_loss=ssim_1.0"


def test_an_override_of_a_swept_parameter_is_refused_before_training(tmp_path):
  """--set of a key the sweep varies would make duplicate runs named by values they do not have;
  a key the sweep holds constant may be overridden (as the recipes' --set train.steps=900)."""
  spec = {"method": "grid", "parameters": {"config.model.bottleneck": {"values": [8, 16]},
                                           "config.train.steps": {"value": 4}},
          "command": [f"--config={ROOT}/experiments/configs/original.py:tiny"]}
  path = tmp_path / "s.yaml"
  path.write_text(yaml.safe_dump(spec))
  with pytest.raises(sweep.SweepError, match=r"--set model.bottleneck=\.\.\. would set config.model.bottleneck, "
                                              r"which the sweep varies \(8, 16\)"):
    sweep.run_sweep(str(path), str(tmp_path / "out"), progress=False, config_overrides={"model.bottleneck": 12})
  assert not (tmp_path / "out").exists()
  with pytest.raises(ValueError, match="config.train.steps=-1"):  # a constant: overridden, then checked
    sweep.run_sweep(str(path), str(tmp_path / "out"), progress=False, config_overrides={"train.steps": -1})


def test_bad_sweep_parameter_fails_before_training(tmp_path):
  spec = {"method": "grid", "parameters": {"config.model.bottleneck": {"values": [0, 8]}},
          "command": [f"--config={ROOT}/experiments/configs/original.py:tiny"]}
  path = tmp_path / "bad.yaml"
  path.write_text(yaml.safe_dump(spec))
  with pytest.raises(ValueError, match="config.model.bottleneck=0"):
    sweep.run_sweep(str(path), str(tmp_path / "out"), progress=False)
  assert not (tmp_path / "out").exists()


def test_train_cli_accepts_agent_style_overrides(tmp_path, data_dir):
  """The command a `wandb agent` runs: --config.<field>=value arguments."""
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=experiments/configs/original.py:tiny", f"--workdir={tmp_path}",
         f"--config.data.dir={data_dir}", "--config.train.steps=2", "--config.model.bottleneck=12",
         "--config.loss=ssim:1.0,mae:0.5", "--config.data.augment_on=device"]  # + the device path
  r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "eval/swap_mae=" in r.stdout
  bad = subprocess.run(cmd[:4] + ["--config.model.bottlenek=3"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert "--config.model.bottlenek: no field 'bottlenek'; valid: ['arch', 'bottleneck'," in bad.stderr
  # The same run, evaluated again from its workdir.
  ev = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}"],
                      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert ev.returncode == 0, ev.stderr[-3000:]
  assert "eval/id_transfer=" in ev.stdout and "judges (synthetic_faces_3.0.0_r16_n2_s0_t64_h8_f32_whole_face" in ev.stdout
  # Evaluate cannot write eval.json (here: a folder in its way): one line, the metrics kept on screen.
  os.replace(tmp_path / "eval.json", tmp_path / "eval.saved")
  os.mkdir(tmp_path / "eval.json")
  ev2 = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert ev2.returncode != 0 and "Traceback" not in ev2.stderr
  assert "could not be written to" in ev2.stderr and "eval/swap_face_mae=" in ev2.stdout
  # Beside a training of the same run (its workdir lock held): refused, naming the holder.
  from encdec_jax import workdir as workdir_lib
  with workdir_lib.lock(str(tmp_path)):
    busy = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert busy.returncode != 0 and f"in use by pid {os.getpid()}" in busy.stderr, busy.stderr[-2000:]
  # An unwritable workdir: one line naming it.
  (tmp_path / "a_file").write_text("not a folder")
  ro = subprocess.run(cmd[:3] + [f"--workdir={tmp_path / 'a_file' / 'run'}"], cwd=ROOT,
                      capture_output=True, text=True, timeout=300)
  assert ro.returncode != 0 and "Traceback" not in ro.stderr and "is not writable" in ro.stderr
  # The overrides reached the run's stored config.
  stored = json.load(open(tmp_path / "config.json"))
  assert stored["model"]["bottleneck"] == 12 and stored["loss"] == "ssim:1.0,mae:0.5"
  assert stored["data"]["augment_on"] == "device"
