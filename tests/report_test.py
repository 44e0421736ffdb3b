"""The sweep report's parts (encdec_jax/report.py, diagnosis.py, plots.py) on hand-made results:
seed spread, paired differences, the diagnosis, the headline, the factor table, curves and plot
labels."""
import numpy as np
import pytest


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
