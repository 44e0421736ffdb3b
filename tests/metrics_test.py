"""The metric registry (encdec_jax/metrics.py): the README's table is its rendering, and every
scalar name evaluation writes has an entry."""
import os

from encdec_jax import metrics


def test_readme_metric_table_is_the_registry():
  """Adding or changing a metric's meaning is one edit in metrics.py plus its README row."""
  readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
  block = readme.split("<!-- metrics table:", 1)[1].split("-->\n", 1)[1]
  rows = block.split("\n\n", 1)[0].splitlines()
  assert rows == metrics.table_lines()


def test_entries_cover_parts_factors_and_patterns():
  assert metrics.entry("eval/swap_face_mae").names == "swap_face_{mae,ssim,psnr}"
  assert metrics.entry("eval/swap_face_psnr/1to0").names == "swap_face_{mae,ssim,psnr}"
  assert metrics.entry("eval/recon_ssim/1").names.startswith("recon_{mae,ssim,psnr}")
  assert metrics.entry("eval/attr_err/smile").names.startswith("attr_mae, attr_err/<factor>")
  assert metrics.entry("eval/recon_attr_err/blink").names.startswith("recon_id_accuracy")
  assert metrics.entry("eval/probe_attr_cross/yaw").names.startswith("probe_attr_same")
  assert metrics.entry("eval/attr_mae_uncalibrated/0to1").names == "tone_shift, *_uncalibrated"
  assert metrics.entry("eval/swap_maee") is None
  assert metrics.entry("eval/nonsense/smile") is None
  assert metrics.entry("eval/swap_mae/0to1x") is None


def test_every_headline_and_reference_has_an_entry():
  assert [m for m, _ in metrics.HEADLINE if metrics.entry(m) is None] == []
  refs = [k for lines in metrics.REFERENCES.values() for k, _ in lines]
  assert [k for k in refs if metrics.entry(k) is None] == []
