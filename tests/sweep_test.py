"""Local sweeps (encdec_jax/sweep.py): enumeration, run names and refusals, the tiny sweep end to
end with its report, the agent-style train CLI, and the report's seed spread, paired differences,
diagnosis and curves."""
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


def test_seed_spread_groups_runs_that_differ_only_in_seed():
  rs = [{"config.model.bottleneck": 8, "config.seed": s, "eval/swap_mae": v, "eval/swap_mae_se": e}
        for s, v, e in ((0, 0.1, 0.01), (1, 0.3, 0.03))]
  rs.append({"config.model.bottleneck": 16, "config.seed": 0, "eval/swap_mae": 0.2})
  from encdec_jax import diagnosis
  out = diagnosis.seed_spread(rs, ["config.model.bottleneck", "config.seed"], ["eval/swap_mae"])
  assert len(out) == 1 and out[0]["setting"] == "bottleneck=8" and out[0]["n"] == 2
  assert out[0]["eval/swap_mae"] == pytest.approx((0.2, 0.1414213), rel=1e-5)
  assert out[0]["eval/swap_mae_se"] == pytest.approx(0.02)  # the runs' mean standard error


def test_paired_difference_uses_the_shared_faces():
  """Setting a scores every face 0.1 worse than b plus a little noise, on faces whose own scores
  vary a lot: the difference is 0.1 with a small error over the faces (each run's own error is
  ~10x larger); two seeds each give the error over seeds; other faces -> no comparison."""
  from encdec_jax import bootstrap, diagnosis
  rng = np.random.default_rng(0)
  faces = [rng.normal(0.5, 0.3, 32), rng.normal(0.5, 0.3, 32)]  # two parts (pairs)
  run = lambda shift, noise: {"expr_mae": [f + shift + rng.normal(0, noise, 32) for f in faces]}  # noqa: E731
  a, b = [run(0.1, 0.01), run(0.12, 0.01)], [run(0.0, 0.01), run(0.0, 0.01)]
  d, se_faces, se_seeds = diagnosis.paired_difference(a, b, "expr_mae")
  assert d == pytest.approx(0.11, abs=0.005)
  assert se_faces < 0.1 * bootstrap.standard_error(a[0]["expr_mae"])
  means = lambda runs: [np.mean([np.mean(x) for x in r["expr_mae"]]) for r in runs]  # noqa: E731
  assert se_seeds == pytest.approx(np.sqrt(np.var(means(a), ddof=1) / 2 + np.var(means(b), ddof=1) / 2))
  assert diagnosis.paired_difference(a, [{"expr_mae": [faces[0][:16], faces[1]]}], "expr_mae") is None
  assert diagnosis.paired_difference(a, [{}], "expr_mae") is None


def test_diagnosis_names_the_cause_from_reconstructions_and_swaps():
  from encdec_jax import diagnosis, report
  ref = {"eval/attr_mae_floor": 0.2, "eval/attr_mae_guess": 0.8}  # halfway: 0.5
  assert diagnosis.diagnose({**ref, "eval/recon_attr_mae": 0.3, "eval/attr_mae": 0.4}) == "swap keeps the expression"
  assert diagnosis.diagnose({**ref, "eval/recon_attr_mae": 0.7, "eval/attr_mae": 0.9}).startswith("cause 1")
  two = diagnosis.diagnose({**ref, "eval/recon_attr_mae": 0.3, "eval/attr_mae": 0.9, "eval/probe_id_accuracy": 1.0})
  assert two.startswith("cause 2") and "100%" in two
  assert diagnosis.diagnose({"eval/recon_mae": 0.1}) is None  # image folders: no factors
  # A judge that reads no expression (the tiny 16 px data) gives no verdict: a blank face in the
  # frame scores pose from the mask's outline.
  blind = {**ref, "eval/recon_attr_mae": 0.3, "eval/attr_mae": 0.4, "eval/attr_floor/smile": 0.6,
           "eval/attr_guess/smile": 0.8}
  assert diagnosis.diagnose(blind).startswith("no verdict")
  # Blur alone (the true swap blurred to the decoder's sharpness) past halfway: no cause is named.
  blurry = {**ref, "eval/recon_attr_mae": 0.7, "eval/attr_mae": 0.9, "eval/blur_attr_mae": 0.6,
            "eval/blur_sigma": 1.5}
  assert diagnosis.diagnose(blurry).startswith("no verdict: blur alone") and "sigma 1.5 px" in diagnosis.diagnose(blurry)
  assert diagnosis.diagnose({**blurry, "eval/blur_attr_mae": 0.3}).startswith("cause 1")
  # Where the mean-face stand-in was measured, it is the bar (it reads the pose from the mask):
  # halfway between 0.2 and 0.5 is 0.35, so a swap at 0.4 no longer keeps the expression.
  flat = {**ref, "eval/attr_mae_mean_face": 0.5}
  assert diagnosis.diagnose({**flat, "eval/recon_attr_mae": 0.3, "eval/attr_mae": 0.4}).startswith("cause 2")
  assert diagnosis.diagnose({**flat, "eval/recon_attr_mae": 0.3, "eval/attr_mae": 0.3}) == "swap keeps the expression"
  # Decoders that paint one face whatever the input are named as such, whatever their scores.
  one = diagnosis.diagnose({**flat, "eval/recon_attr_mae": 0.3, "eval/attr_mae": 0.3, "eval/swap_variation": 0.1})
  assert one.startswith("one face whatever the input") and "0.10" in one
  # ... also where such a run wins the sweep's metric (a mean face can win them all).
  runs = [{"run": "a", "eval/id_transfer": 0.5, **flat, "eval/recon_attr_mae": 0.5, "eval/attr_mae": 0.5,
           "eval/swap_variation": 0.1},
          {"run": "b", "eval/id_transfer": 0.2, **flat, "eval/recon_attr_mae": 0.5, "eval/attr_mae": 0.5}]
  best = report._best(runs, {"name": "eval/id_transfer", "goal": "maximize"})
  assert "**a**" in best and "one face whatever the input" in best
  assert "diagnosis" not in report._best(runs[1:], {"name": "eval/id_transfer", "goal": "maximize"})


def test_the_headline_names_the_best_setting_over_seeds_not_a_lucky_run():
  """The single best run (16, seed 0) belongs to the worse setting on the mean over seeds: the
  headline names 128 with its mean and std, then the run; without seeds, the best run as before."""
  from encdec_jax import report
  keys = ["config.model.bottleneck", "config.seed"]
  vals = {(16, 0): 0.56, (16, 1): 0.65, (128, 0): 0.568, (128, 1): 0.570}
  runs = [{"run": f"r{b}_{s}", "config.model.bottleneck": b, "config.seed": s, "eval/expr_mae": v}
          for (b, s), v in vals.items()]
  metric = {"name": "eval/expr_mae", "goal": "minimize"}
  line = report._best(runs, metric, keys)
  assert "mean over seeds: **bottleneck=128**, 0.5690 ± 0.0014 (std over 2 seeds)" in line, line
  assert line.endswith("the best single run: r16_0, 0.5600")
  assert report.best_setting(runs, keys, {**metric, "goal": "maximize"})[0] == "bottleneck=16"
  one_seed = [r for r in runs if r["config.seed"] == 0]
  assert "**r16_0**, 0.5600" in report._best(one_seed, metric, keys)


def test_factor_table_shows_the_signed_error_per_direction_for_few_directions():
  """The report's per-factor table: a signed column per swap direction (the mean over runs of
  attr_bias/<factor>/<i>to<j>), '-' where a run has none (evaluated before the column), and no
  signed columns past MAX_BIAS_DIRECTIONS directions (3 identities: 6)."""
  from encdec_jax import report
  from encdec_jax.data.render import POSE_EXPRESSION
  base = {"eval/judge_accuracy": 1.0, "eval/attr_mae_floor": 0.2, "eval/attr_mae_guess": 0.8}
  for n in POSE_EXPRESSION:
    base.update({f"eval/attr_floor/{n}": 0.1, f"eval/attr_guess/{n}": 0.8, f"eval/attr_err/{n}": 0.3})
  signed = lambda v01, v10: {**base, **{f"eval/attr_bias/{n}/{d}": v for n in POSE_EXPRESSION  # noqa: E731
                                        for d, v in (("0to1", v01), ("1to0", v10))}}
  row = lambda lines: next(ln for ln in lines if ln.startswith("| smile |"))  # noqa: E731
  ideal = {f"eval/attr_bias_ideal/{n}/{d}": v for n in POSE_EXPRESSION for d, v in (("0to1", -0.3), ("1to0", 0.2))}
  lines = report._judges_lines([{**signed(0.5, -0.25), **ideal}, {**signed(0.3, -0.05), **ideal}])
  assert ("| runs' mean error | signed, 0to1 | signed, 1to0 | a perfect decoder j, signed, 0to1 "
          "| a perfect decoder j, signed, 1to0 |") in "\n".join(lines)
  assert row(lines) == "| smile | 0.10 | - | - | - | 0.80 | 0.30 | +0.40 | -0.15 | -0.30 | +0.20 |"
  assert row(report._judges_lines([base, signed(0.5, -0.25)])).endswith("| 0.30 | - | - | - | - |")
  assert "3 fitted alike with different seeds" in report._judges_lines([{**base, "eval/judge_panel": 3.0}])[0]
  assert "fitted alike" not in report._judges_lines([base])[0]  # one judge (evaluated before panels)
  assert "| factor | runs, 0to1 |" not in "\n".join(lines)  # no correlations in these results
  corr = {f"eval/{k}/{n}/{d}": v for n in POSE_EXPRESSION
          for k, d, v in (("attr_corr", "0to1", -0.7), ("attr_corr", "1to0", 0.9),
                          ("attr_corr_ideal", "0to1", 0.75), ("attr_corr_ideal", "1to0", 0.8))}
  lines = report._judges_lines([{**signed(0.5, -0.25), **corr, "eval/attr_corr/smile_se": 0.04},
                                {**signed(0.3, -0.05), **corr, "eval/attr_corr/smile/0to1": -0.5, "eval/attr_corr/smile_se": 0.06}])
  head = lines.index("| factor | runs, 0to1 | runs, 1to0 | standard error | a perfect decoder j, 0to1 "
                     "| a perfect decoder j, 1to0 |")
  assert lines[head + 2:head + 9][POSE_EXPRESSION.index("smile")] == "| smile | -0.60 | +0.90 | 0.05 | +0.75 | +0.80 |"
  assert lines[head + 2:head + 9][POSE_EXPRESSION.index("yaw")] == "| yaw | -0.70 | +0.90 | - | +0.75 | +0.80 |"
  against = next(ln for ln in lines if ln.startswith("**The swaps move against the source**"))
  assert "smile 0to1 (-0.60)" in against and "yaw 0to1 (-0.70)" in against and "1to0" not in against
  flipped = report._judges_lines([{**signed(0.5, -0.25), **{k: -v for k, v in corr.items()}}])
  against = next(ln for ln in flipped if ln.startswith("**The swaps move against the source**"))
  assert "smile 1to0 (-0.90)" in against and "0to1" not in against
  follows = report._judges_lines([{**signed(0.5, -0.25), **{k: abs(v) for k, v in corr.items()}}])
  assert not any(ln.startswith("**The swaps move against the source**") for ln in follows)
  many = {**base, **{f"eval/attr_bias/smile/{i}to{j}": 0.1 for i in range(3) for j in range(3) if i != j}}
  lines = report._judges_lines([many])
  assert "signed" not in "\n".join(lines) and row(lines) == "| smile | 0.10 | - | - | - | 0.80 | 0.30 |"


def test_curves_plot_each_runs_evaluations_against_steps(tmp_path):
  import json
  from encdec_jax import plots, report, tracking
  for run, vals in (("a", [0.9, 0.7, 0.5]), ("b", [0.8, 0.8, 0.6])):
    (tmp_path / run).mkdir()
    rows = [{"step": 10 * (k + 1), "eval/expr_mae": v} for k, v in enumerate(vals)]
    rows.insert(1, {"step": 15, "train/loss": 1.0})
    (tmp_path / run / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
  assert tracking.eval_curve(str(tmp_path / "a" / "metrics.jsonl"), "eval/expr_mae") == [(10, 0.9), (20, 0.7), (30, 0.5)]
  runs = [{"run": "a"}, {"run": "b"}]
  assert plots.plot_curves(report.eval_curves(runs, str(tmp_path)), runs, str(tmp_path)) == "curves.png"
  from PIL import Image
  assert Image.open(tmp_path / "curves.png").size[0] > 100
  (tmp_path / "c").mkdir()
  runs = [{"run": "c"}]
  assert plots.plot_curves(report.eval_curves(runs, str(tmp_path)), runs, str(tmp_path)) is None  # nothing evaluated twice


@pytest.mark.parametrize("text,width,want", [
    ("ssim:1.0,mae:1.0,swap_tone:1.0,identity_adversary:0.1", 22,
     "ssim:1.0,mae:1.0,\nswap_tone:1.0,\nidentity_adversary:0.1"),
    ("mae:1.0", 4, "mae:1.0"),                        # one term longer than the width: its own line
    ("loss=a:1,b:2, bottleneck=16", 40, "loss=a:1,b:2, bottleneck=16")])
def test_plot_labels_wrap_only_after_commas(text, width, want):
  """The metric plots' tick and legend labels (a loss spec is one long word) are wrapped after its
  commas, so two settings' labels do not run into each other."""
  from encdec_jax import plots
  got = plots.wrap(text, width)
  assert got == want and got.replace("\n", "") == text
