"""Tone calibration (encdec_jax/calibration.py) through stand-in decoders: its shifts against a numpy
reference, and its wiring into evaluation and swapping."""
import json
import re

import numpy as np
import pytest

from encdec_jax import assemble, calibration, config as config_lib, convert, decode, evaluate, inference, preview
from tests.helpers import init_params, swapped

GAIN, BIAS = np.array([0.9, 1.1]), np.array([0.08, -0.05])  # decoder j: x * GAIN[j] + BIAS[j]


def _affine(params, x):
  x = np.asarray(x, np.float32)
  return np.stack([np.clip(x * g + b, 0, 1) for g, b in zip(GAIN, BIAS)]).astype(np.float32)


def test_calibrate_against_a_numpy_reference(tiny_data):
  trn, _ = tiny_data
  got = calibration.calibrate_params(None, _affine, trn, 2, per_identity=5)
  want = np.zeros((2, 2, 3))
  own = []
  for i in range(2):
    sel = np.flatnonzero(trn["identity"] == i)[:5]
    x = trn["image"][sel] / 255.0
    m = trn["mask"][sel][..., :1] / 255.0
    own.append((x * m).sum((0, 1, 2)) / m.sum())
    for j in range(2):
      y = np.clip(x * GAIN[j] + BIAS[j], 0, 1)
      want[i, j] = (y * m).sum((0, 1, 2)) / m.sum()
  want -= np.asarray(own)[None]
  want[[0, 1], [0, 1]] = 0
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert abs(got[0, 1]).max() > 0.01 and abs(got[1, 0]).max() > 0.01  # it measured something


@pytest.mark.parametrize("face_type", [None, "head"])
def test_calibrate_without_masks_weights_the_face_types_ellipse(tiny_data, face_type):
  """No learned and no stored mask: the run's face type's soft ellipse (the default's for None)."""
  trn, _ = tiny_data
  bare = {k: trn[k] for k in ("image", "identity")}
  got = calibration.calibrate_params(None, _affine, bare, 2, per_identity=3, face_type=face_type)
  e = convert.soft_ellipse(trn["image"].shape[1], face_type)[None]
  x0 = trn["image"][np.flatnonzero(trn["identity"] == 0)[:3]] / 255.0
  x1 = trn["image"][np.flatnonzero(trn["identity"] == 1)[:3]] / 255.0
  mc = lambda a: (a * e).sum((0, 1, 2)) / (e.sum() * len(a))  # noqa: E731
  np.testing.assert_allclose(got[0, 1], mc(np.clip(x0 * GAIN[1] + BIAS[1], 0, 1)) - mc(x1), atol=1e-5)


def test_into_averages_the_other_identities_shifts():
  s = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
  np.testing.assert_allclose(calibration.into(s, 1), (s[0, 1] + s[2, 1]) / 2)
  with pytest.raises(ValueError, match="identity 1 has no training image"):
    calibration.calibrate_params(None, _affine, {"image": np.zeros((2, 8, 8, 3), np.uint8),
                                   "identity": np.zeros(2, np.int64)}, 2)


def test_evaluate_scores_the_calibrated_swaps_and_reports_the_uncalibrated(tiny_data):
  """With tone shifts, every swap metric is the one of decoders whose output had the shift taken
  off; reconstructions are untouched; the uncalibrated tone gap is the plain evaluation's."""
  trn, test = tiny_data
  shifts = calibration.calibrate_params(None, _affine, trn, 2)

  def shifted(params, x):  # decoder 1 only ever swaps identity 0's faces here, decoder 0 identity 1's
    y = _affine(params, x)
    return np.stack([decode.take_off(y[0], shifts[1, 0]), decode.take_off(y[1], shifts[0, 1])])

  plain = evaluate.evaluate(None, _affine, test, 2)
  cal = evaluate.evaluate(None, _affine, test, 2, shifts=shifts)
  manual = evaluate.evaluate(None, shifted, test, 2)
  for pair in ("0to1", "1to0"):
    for k in ("swap_face_mae", "swap_mae", "raw_swap_mae", "swap_tone_gap", "swap_variation"):
      assert cal[f"eval/{k}/{pair}"] == pytest.approx(manual[f"eval/{k}/{pair}"], abs=1e-6), (k, pair)
    assert cal[f"eval/swap_tone_gap_uncalibrated/{pair}"] == pytest.approx(plain[f"eval/swap_tone_gap/{pair}"], abs=1e-6)
    i, j = int(pair[0]), int(pair[-1])
    assert cal[f"eval/tone_shift/{pair}"] == pytest.approx(float(shifts[i, j].mean()), abs=1e-6)
  for i in range(2):
    assert cal[f"eval/recon_face_mae/{i}"] == pytest.approx(plain[f"eval/recon_face_mae/{i}"], abs=1e-7)
  assert cal["eval/swap_face_mae"] != pytest.approx(plain["eval/swap_face_mae"], abs=1e-4)
  grid = preview.preview_grid(None, _affine, test, 2, shifts=shifts)
  assert not np.allclose(grid, preview.preview_grid(None, _affine, test, 2))


def test_a_runs_shifts_and_swaps_follow_config_eval_tone(tiny_config, tiny_data):
  trn, test = tiny_data
  with pytest.raises(config_lib.ConfigError, match=r"config.eval.tone='auto'; valid: none, train"):
    assemble.checked_config(tiny_config(**{"eval.tone": "auto"}))
  cfg = assemble.checked_config(tiny_config(**{"eval.tone": "train"}))
  a = assemble.assemble(cfg)
  params = init_params(a.model, cfg.model)
  run = inference.Run(cfg, a.model, params, 0, ["0", "1"])
  shifts = inference.colour_shifts(run)  # loads the training data itself
  np.testing.assert_allclose(shifts, calibration.calibrate_params(params, decode.make_decode_all(a.model), trn, 2), atol=1e-6)
  x = test["image"][:3].astype(np.float32) / 255
  got, m = inference.swap(run, x, 1, masks=test["mask"][:3], shift=shifts[0, 1])
  y = swapped(a.model, params, x, 1)
  np.testing.assert_allclose(got, convert.convert(x, np.clip(y - shifts[0, 1], 0, 1), m), atol=1e-6)
  none = inference.Run(assemble.checked_config(tiny_config()), a.model, params, 0, ["0", "1"])
  assert inference.colour_shifts(none) is None


def test_a_checkpoints_stored_shifts_are_reused_and_others_computed(tiny_config, tmp_path, capsys):
  """tone.json holds the shifts each evaluated checkpoint used; swaps of that checkpoint reuse
  them (no training data needed). Another step's, and every entry that fails a check (damaged,
  non-finite, out of range, the wrong shape, another checkpoint's, no stamp), are calibrated
  again with a one-line note, never used."""
  from encdec_jax import workdir
  cfg = assemble.checked_config(tiny_config(**{"eval.tone": "train"}))
  a = assemble.assemble(cfg)
  params = init_params(a.model, cfg.model)
  fake = np.full((2, 2, 3), 0.25, np.float32)
  tone = str(tmp_path / workdir.TONE)
  workdir.write_json(tone, {"7": workdir.tone_entry(7, "abc", fake)})
  run = lambda step, h="abc": inference.Run(cfg, a.model, params, step, ["0", "1"], config_hash=h,  # noqa: E731
                                            workdir=str(tmp_path))
  notes = lambda: [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note:")]  # noqa: E731
  np.testing.assert_array_equal(inference.colour_shifts(run(7)), fake)
  assert notes() == []
  other = inference.colour_shifts(run(8))
  assert other.shape == (2, 2, 3) and not np.allclose(other, fake)
  assert notes() == []  # no entry for step 8: computed, nothing to say
  np.testing.assert_allclose(inference.colour_shifts(run(7), reuse=False), other, atol=1e-6)
  bad = {"non-finite values": workdir.tone_entry(7, "abc", np.full((2, 2, 3), np.nan)),
         "a shift of 1e\\+30, beyond 1": workdir.tone_entry(7, "abc", np.full((2, 2, 3), 1e30)),
         "a shift of 5, beyond 1": workdir.tone_entry(7, "abc", np.full((2, 2, 3), -5.0)),
         r"shape \(3, 3, 3\), not \(2, 2, 3\)": workdir.tone_entry(7, "abc", np.zeros((3, 3, 3))),
         r"shape \(1, 1, 3\), not \(2, 2, 3\)": workdir.tone_entry(7, "abc", np.zeros((1, 1, 3))),
         "computed from another checkpoint .step 7, config xyz": workdir.tone_entry(7, "xyz", fake),
         "computed from another checkpoint .step 20, config abc": workdir.tone_entry(20, "abc", fake),
         "no record of the checkpoint": fake.tolist()}
  for why, entry in bad.items():
    (tmp_path / workdir.TONE).write_text(json.dumps({"7": entry}))  # json writes NaN as NaN
    np.testing.assert_allclose(inference.colour_shifts(run(7)), other, atol=1e-6)
    said = notes()
    assert len(said) == 1 and re.search(why, said[0]) and "computed again" in said[0], (why, said)
  (tmp_path / workdir.TONE).write_text('{"7": [1, 2')
  assert workdir.read_tone(str(tmp_path), 7, 2, "abc")[0] is None
  assert "cannot be read" in workdir.read_tone(str(tmp_path), 7, 2, "abc")[1]
