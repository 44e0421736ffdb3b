"""The swap judges: accurate on real renderings, blind to hair, and the metrics they give are the
right ones for stand-in models whose answers are known."""
import numpy as np
import pytest

from encdec_jax import convert, evaluate, image_stats, judge_cache, judges as judges_lib, preview
from encdec_jax.data import render as R


@pytest.fixture(scope="module")
def judge_data(data_dir):
  """The small sweep's data (32 px, 600 training and 32 held-out faces per identity): the tiny
  test set (64 at 16 px) is too small and too coarse for the judges (at 256 per identity the
  identity judge scored 92% on held-out faces)."""
  from encdec_jax.data import synthetic_faces
  b = synthetic_faces.builder(32, 2, 0, 600, 32, 64, "whole_face", data_dir)
  return synthetic_faces.load_split(b, "train"), synthetic_faces.load_split(b, "test")


@pytest.fixture(scope="module")
def judges(judge_data):
  from encdec_jax.data import synthetic
  train, test = judge_data
  swaps = synthetic.training_face_swaps(0, 2, 32, 600, 64, "whole_face", frames=train["frame"])
  return judges_lib.train_panel(train, test, 2, extra=swaps, patch_scale=1.9)


def test_judges_are_accurate_on_held_out_renderings(judges, judge_data):
  """Identity: every held-out rendering right from its face alone. Pose/expression: the floor of
  every factor against guessing the mean, measured here (600 per identity, 32 px whole_face
  crops of 64 px frames; read where the locator finds the features, by the panel of three):
  yaw 0.08, pitch 0.19, smile 0.19, mouth_open 0.12, blink 0.11, brow_raise 0.27 (guessing 0.8
  to 0.9). Roll is not read
  (0.91): the aligned crop turns every face upright, and a swap pasted back by the same transform
  keeps its frame's roll exactly.
  Pose (yaw, pitch) and the expression must be readable; attr_mae averages the readable ones."""
  _, test = judge_data
  assert judges.accuracy == 1.0
  truth = (test["factors"][:, :7] - judges.attr_mean) / judges.attr_std
  np.testing.assert_allclose(judges.attr_guess, np.abs(truth).mean(0), rtol=1e-5)
  readable = dict(zip(R.POSE_EXPRESSION, judges.readable))
  assert all(readable[n] for n in ("yaw", "pitch", "smile", "mouth_open", "blink")), judges.attr_floors
  assert not readable["roll"], judges.attr_floors
  assert judges.attr_floor == pytest.approx(judges.attr_floors[judges.readable].mean())
  assert judges.attr_floor < 0.5 * judges.attr_guess_mean


def test_the_panel_reads_the_mean_of_its_judges(judges, judge_data):
  """A Panel reads pose and expression as the mean of its three judges' readings (each where its
  own locator finds the features), and the identity as the argmax of their summed scores. Its
  judges differ (their seeds draw their random features and their copies' noise), so per factor
  its floor is at most its judges' mean floor: the mean of three errors is at most their mean
  size. Measured here: 0.159 against its judges' 0.159-0.167."""
  _, test = judge_data
  x, m, lm = judges_lib.judged_view(test)["image"], test["mask"], test["landmarks"]
  readings = [one.attributes(x, m, lm) for one in judges.members]
  assert not np.allclose(readings[0], readings[1], atol=1e-3)  # the seeds differ
  np.testing.assert_allclose(judges.attributes(x, m, lm), np.mean(readings, 0), atol=1e-6)
  scores = sum(one.identity_scores(x, m) for one in judges.members)
  np.testing.assert_array_equal(judges.identify(x, m), scores.argmax(-1))
  floors = np.stack([one.attr_floors for one in judges.members])
  assert np.all(judges.attr_floors <= floors.mean(0) + 1e-6), (judges.attr_floors, floors)
  assert evaluate.judge_references(judges)["eval/judge_panel"] == len(judges_lib.PANEL) == 3


def test_identity_judge_reads_the_face_not_the_hair(judges, judge_data):
  """Renders with j's face and i's hair (the true face swaps) are recognised as j: hair cannot
  decide identity. Measured: 100%."""
  from encdec_jax import align
  _, test = judge_data
  n = len(test["image"])
  other = 1 - test["identity"]
  faces = align.crops(test["face_swaps"][np.arange(n), other], test["transform"], 32)  # as judged
  assert (judges.identify(faces, test["mask"]) == other).mean() >= 0.95  # inside the frame's mask


def _lookup_decode_all(test, mode, seed=0):
  """A stand-in model. 'perfect': decoder j returns the true face swap into j inside the face
  mask the convert uses (the source's) and noise outside (where a mask-trained decoder is never
  trained); 'lighter': the same, lighter by a constant inside the face; 'own': decoder j returns
  j's own aligned crop at the source's factors inside the mask (a perfect per-identity decoder:
  j's face in j's own layout, synthetic.own_crops); 'whole': the true swap's crop, all of it
  (no noise); 'copy': every decoder returns its input."""
  from encdec_jax import align
  table = {test["image"][k].tobytes(): k for k in range(len(test["image"]))}
  r = test["image"].shape[1]
  truth = [align.crops(test["face_swaps"][:, j], test["transform"], r) for j in range(2)]  # in the crops
  if mode == "own":
    from encdec_jax.data import synthetic
    truth = [synthetic.own_crops(0, j, test["factors"], r, test["frame"].shape[1], "whole_face")
             for j in range(2)]

  # Each face's own noise, whatever batch it comes in.
  noise = np.random.default_rng(seed).uniform(size=(2,) + test["image"].shape).astype(np.float32)

  def decode_all(params, x):
    x = np.asarray(x)
    if mode == "copy":
      return np.stack([x] * 2)
    rows = [table[im.tobytes()] for im in np.round(x * 255).astype(np.uint8)]
    out = []
    for j in range(2):
      face = truth[j][rows]
      m = test["mask"][rows][..., :1].astype(np.float32) / 255
      face = np.clip(face + 0.12, 0, 1) if mode == "lighter" else face
      out.append(face if mode == "whole" else m * face + (1 - m) * noise[j][rows])
    return np.stack(out)
  return decode_all


def test_tone_matched_transfer_separates_a_tone_fault_from_a_face_fault(judges, judge_data):
  """Swaps that are the true face swaps but lighter fail the identity judge; with the pair's
  mean tone gap taken off (id_transfer_tone_matched) they pass. Swaps that copy the source fail
  it outright; once matched, the judge reads most of them as the target too (0.875 measured on
  family 0, against 1.0 for the lighter truths): it reads the tone most, so the matched score
  tells a tone fault apart, not the right face."""
  _, test = judge_data
  light = evaluate.evaluate(None, _lookup_decode_all(test, "lighter"), test, 2, judges=judges)
  assert light["eval/id_transfer"] < 0.8, light["eval/id_transfer"]  # the tone alone fails it (0.50)
  assert light["eval/id_transfer_tone_matched"] >= 0.85  # 1.0 measured
  copy = evaluate.evaluate(None, _lookup_decode_all(test, "copy"), test, 2, judges=judges)
  assert copy["eval/id_transfer"] <= 0.05
  assert copy["eval/id_transfer_tone_matched"] <= 0.95


def test_a_calibrated_evaluation_keeps_the_plain_scores_as_uncalibrated(judges, judge_data, monkeypatch):
  """With tone shifts (encdec_jax/calibration.py) the headline scores are the calibrated swaps', and the
  *_uncalibrated ones are exactly the plain evaluation's: swaps 0.12 lighter than the truth fail
  the identity judge as decoded and pass once the same 0.12 is taken off. The references (what
  no model changes: the true swaps, their crops pasted, j's mean face) kept by one evaluation
  (`references`) and read by the next give every scalar the evaluation computes itself."""
  _, test = judge_data
  dec = _lookup_decode_all(test, "lighter")
  plain = evaluate.evaluate(None, dec, test, 2, judges=judges)
  shift = np.zeros((2, 2, 3), np.float32)
  shift[0, 1] = shift[1, 0] = 0.12
  kept: dict = {}
  cal = evaluate.evaluate(None, dec, test, 2, judges=judges, shifts=shift, references=kept)
  assert len(kept) == 2  # the two directions
  refs = [k for k in plain if any(t in k for t in ("_oracle", "_truth", "_pasted", "_mean_face"))]
  assert len(refs) > 20 and all(cal[k] == plain[k] for k in refs)

  def computed_again(*a, **k):
    raise AssertionError("reference_scores computed again")
  monkeypatch.setattr(evaluate, "reference_scores", computed_again)
  assert evaluate.evaluate(None, dec, test, 2, judges=judges, references=kept) == plain
  for k in ("id_transfer", "attr_mae"):
    assert cal[f"eval/{k}_uncalibrated"] == pytest.approx(plain[f"eval/{k}"], abs=1e-9)
  assert plain["eval/id_transfer"] < 0.8 and cal["eval/id_transfer"] >= 0.95, (plain["eval/id_transfer"], cal["eval/id_transfer"])
  assert cal["eval/tone_shift"] == pytest.approx(0.12)
  from encdec_jax import metrics  # every scalar this full evaluation writes is explained
  assert [k for k in cal if metrics.entry(k) is None] == []


def _truth_crops_by_factors(test):
  """An `ideal` for evaluate that gives, for each source row (found by its factors), the true face
  swap's crop into j: the `_ideal` scores must then be the `_pasted` ones."""
  from encdec_jax import align
  rows = {test["factors"][k].tobytes(): k for k in range(len(test["factors"]))}
  crops = [align.crops(test["face_swaps"][:, j], test["transform"], test["image"].shape[1]) for j in range(2)]
  return lambda j, factors: crops[j][[rows[f.tobytes()] for f in factors]]


def test_the_ideals_signed_error_is_the_swaps_where_the_model_draws_the_ideal(judges, judge_data):
  """`attr_bias_ideal/<factor>/<i>to<j>`: the judge's signed reading of the ideal crops, converted
  as a swap is, minus the source's truth. A model whose decoders draw exactly those crops shows
  the same signed error in every direction; it is signed (not the unsigned error), and a model
  that draws something else does not change it."""
  from encdec_jax.data.render import POSE_EXPRESSION
  _, test = judge_data
  ideal = _truth_crops_by_factors(test)
  m = evaluate.evaluate(None, _lookup_decode_all(test, "whole"), test, 2, judges=judges, ideal=ideal)
  keys = [f"{n}/{d}" for n in POSE_EXPRESSION for d in ("0to1", "1to0")]
  assert all(m[f"eval/attr_bias_ideal/{k}"] == m[f"eval/attr_bias/{k}"] for k in keys)
  assert any(m[f"eval/attr_bias_ideal/{k}"] < -0.01 for k in keys), m  # signed: some read below the truth
  other = evaluate.evaluate(None, _lookup_decode_all(test, "copy"), test, 2, judges=judges, ideal=ideal)
  assert all(other[f"eval/attr_bias_ideal/{k}"] == m[f"eval/attr_bias_ideal/{k}"] for k in keys)
  assert any(abs(other[f"eval/attr_bias/{k}"] - m[f"eval/attr_bias/{k}"]) > 0.1 for k in keys)
  # The same for how the readings follow the sources' factors (attr_corr_ideal): the ideal's own,
  # the model's where it draws the ideal, and the readable expression follows the source.
  assert all(m[f"eval/attr_corr_ideal/{k}"] == m[f"eval/attr_corr/{k}"] for k in keys)
  assert all(other[f"eval/attr_corr_ideal/{k}"] == m[f"eval/attr_corr_ideal/{k}"] for k in keys)
  assert all(m[f"eval/attr_corr/{n}/{d}"] > 0.5 for n in ("smile", "mouth_open", "blink") for d in ("0to1", "1to0")), m
  assert m["eval/attr_corr/smile"] == np.mean([m[f"eval/attr_corr/smile/{d}"] for d in ("0to1", "1to0")])
  # Its bootstrap error (the images of each direction resampled together): about (1 - r^2) /
  # sqrt(n) per direction, the mean of two directions 1 / sqrt(2) of that. (Not blink: 32 faces
  # hold one or two closed eyes, and a resample without them has no blink to follow.)
  n = int((test["identity"] == 0).sum())
  for f in ("smile", "mouth_open", "yaw"):
    approx = np.mean([1 - m[f"eval/attr_corr/{f}/{d}"] ** 2 for d in ("0to1", "1to0")]) / np.sqrt(2 * n)
    assert 0.5 * approx < m[f"eval/attr_corr/{f}_se"] < 2 * approx, (f, m[f"eval/attr_corr/{f}_se"], approx)


def test_factor_correlations_tell_following_from_ignoring_and_from_moving_the_other_way(judges, judge_data):
  """`attr_corr/<factor>`: the correlation between the judge's readings (the truth plus the signed
  error) and the source's factors. Readings that are the truth scaled by a positive number follow
  it (1), one reading for every image ignores it (0), readings scaled by a negative number move
  the other way (-1); noise on the readings lowers it."""
  _, test = judge_data
  truth = (test["factors"][:, :7] - judges.attr_mean) / judges.attr_std
  corr = lambda readings: judges_lib.factor_correlations(judges, {  # noqa: E731
      f"attr_bias/{n}": readings[:, k] - truth[:, k] for k, n in enumerate(R.POSE_EXPRESSION)}, test["factors"])
  follow, ignore, invert = corr(0.5 * truth), corr(np.full_like(truth, 0.3)), corr(-2 * truth + 1)
  noisy = corr(truth + np.random.default_rng(0).normal(0, 1, truth.shape))
  for n in R.POSE_EXPRESSION:
    assert follow[f"attr_corr/{n}"] == pytest.approx(1.0, abs=1e-6)
    assert ignore[f"attr_corr/{n}"] == 0.0
    assert invert[f"attr_corr/{n}"] == pytest.approx(-1.0, abs=1e-6)
    assert 0.3 < noisy[f"attr_corr/{n}"] < 0.95, (n, noisy)
  assert judges_lib.factor_correlations(judges, {}, test["factors"]) == {}
  assert judges_lib.factor_correlations(judges, {"attr_bias/yaw": truth[:, 0]}, None) == {}


def test_perfect_model_scores_full_transfer_and_the_floor(judges, judge_data):
  _, test = judge_data
  m = evaluate.evaluate(None, _lookup_decode_all(test, "perfect"), test, 2, judges=judges,
                        ideal=_truth_crops_by_factors(test))
  # The `_ideal` reference is converted and judged as the swaps are: given the true swaps' crops
  # for each source's factors, it scores exactly what the true swap's crop pasted does.
  for k in ("attr_mae", "expr_mae", "pose_mae", "id_transfer", "attr_err/smile", "attr_err/pitch"):
    ideal, pasted = (k.replace("attr_err/", f"attr_err_{r}/") if "/" in k else f"{k}_{r}"
                     for r in ("ideal", "pasted"))
    assert m[f"eval/{ideal}"] == m[f"eval/{pasted}"], (k, m[f"eval/{ideal}"], m[f"eval/{pasted}"])
  assert m["eval/id_transfer"] >= 0.95 and m["eval/id_leak"] <= 0.05
  # The converted swap has the source's pose and expression exactly: its error is the floor.
  assert abs(m["eval/attr_mae"] - m["eval/attr_mae_floor"]) < 0.1, m
  assert m["eval/attr_mae"] < 0.5 * m["eval/attr_mae_guess"]
  for part in ("expr", "pose"):  # apart, each at its own floor
    assert abs(m[f"eval/{part}_mae"] - m[f"eval/{part}_mae_floor"]) < 0.1, m
    assert m[f"eval/{part}_mae"] < 0.5 * m[f"eval/{part}_mae_guess"], m
  # Each mean carries its error over these 2 x 32 faces, the 0/1 shares included: the swap's errors
  # vary from face to face, so it is above 0 and well below the metric.
  for k in ("attr_mae", "expr_mae", "pose_mae", "swap_face_mae", "recon_expr_mae"):
    assert 0.0 < m[f"eval/{k}_se"] < 0.3 * m[f"eval/{k}"], (k, m[f"eval/{k}_se"], m[f"eval/{k}"])
  assert 0.0 <= m["eval/id_transfer_se"] <= 0.05
  # A decoder that ignores its input (j's mean face in x_i's frame): near guessing (the paste's
  # round outline does not turn with the head), far worse than the perfect swap. Measured: 0.66
  # against 0.84 and 0.16 (0.85 read without the locator, judges VERSION 9). (Its id_transfer is
  # reported too: the judge may read both blurred mean faces of a family as one identity.)
  assert m["eval/attr_mae"] + 0.3 < m["eval/attr_mae_mean_face"] < m["eval/attr_mae_guess"] + 0.1, m
  assert 0.0 <= m["eval/id_transfer_mean_face"] <= 1.0
  # The judge on the true face swaps is the ceiling of id_transfer and, on pose and expression,
  # what a perfect swap can show; the perfect model (the truth's crop pasted back) reaches both.
  assert m["eval/id_transfer_truth"] >= 0.95
  assert abs(m["eval/id_transfer"] - m["eval/id_transfer_truth"]) <= 0.05
  for part in ("attr", "expr", "pose"):
    assert abs(m[f"eval/{part}_mae"] - m[f"eval/{part}_mae_truth"]) < 0.1, m
    assert m[f"eval/{part}_mae_truth"] < 0.5 * m[f"eval/{part}_mae_guess"], m
  assert m["eval/attr_err_truth/yaw"] < 0.5 * m["eval/attr_guess/yaw"], m  # per factor too
  # The true swap's crop pasted back as a decoded crop is: what this stand-in draws inside the
  # mask (outside it noise, which the feathered edge lets in a little), so its scores are the
  # stand-in's: within 0.02 (0.006-0.016 on attr_mae and expr_mae over six draws of the noise),
  # and one face of 64 on the identity judge.
  for k in ("attr_mae", "expr_mae", "pose_mae", "id_transfer", "attr_err/yaw", "attr_err/smile"):
    pasted = k.replace("attr_err/", "attr_err_pasted/") if "/" in k else f"{k}_pasted"
    tol = 1 / 64 + 1e-9 if k == "id_transfer" else 0.02
    assert m[f"eval/{pasted}"] == pytest.approx(m[f"eval/{k}"], abs=tol), (k, m[f"eval/{pasted}"], m[f"eval/{k}"])
  # Far better than copying on the face, which the noise outside the mask never reaches (not 0:
  # the crop's inscribed circle does not hold the chin, the cheeks' edges and the forehead's,
  # where the frame's own skin, given the swap's tone (convert.carry_tone), stays; 0.024
  # against 0.076 measured; 0.039 with the frame's own tone there, 0.028 with a fade to the
  # crop's square).
  assert m["eval/swap_face_mae"] < 0.03 and m["eval/swap_face_mae"] < 0.6 * m["eval/swap_face_mae_input"], m
  assert m["eval/swap_face_mae"] <= m["eval/swap_face_mae_oracle"] + 0.01
  # Its reconstructions are exact inside the mask: the convert gives the source back.
  assert m["eval/recon_face_mae"] < 0.02
  # It draws what it is given: its swaps vary as the true swaps do, inside the face.
  assert m["eval/swap_variation"] > 0.8 and m["eval/recon_variation"] > 0.8, m


def test_own_crops_are_the_identitys_training_images(judge_data):
  """synthetic.own_crops renders identity j's own aligned crop at given factors: at the dataset's
  own factors it is the dataset's image (to its uint8 rounding), so it is what decoder j learns
  to draw; and it is not the true face swap's crop into j (j's face in i's frame), whose
  features sit about a pixel away."""
  from encdec_jax.data import render as R, synthetic
  _, test = judge_data
  for i in (0, 1):
    rows = np.flatnonzero(test["identity"] == i)[:6]
    got = synthetic.own_crops(0, i, test["factors"][rows], 32, 64, "whole_face")
    assert got.shape == (6, 32, 32, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, test["image"][rows] / 255.0, atol=0.5 / 255 + 1e-6)
    # Where j's own crop at i's factors has its features, against the true face swap into j (in
    # i's crop): 0.3-1.9 px apart per landmark on this family (BENCHMARKS.md, "Default sweep").
    tj = R.identity_traits(0, 1 - i)
    own_lms = np.array([synthetic.crop_landmarks(R.render(tj, f, 4).landmarks,
                                                 synthetic.transform(tj, f, 32, 64, "whole_face"), 64, 32)
                        for f in test["factors"][rows].astype(np.float64)])
    gap = np.abs(test["face_swap_landmarks"][rows, 1 - i] - own_lms).mean(0) * 32  # (4, 2) px
    assert gap[:, 1].max() > 0.5, gap  # vertically: the eyes and the nose


def test_a_perfect_per_identity_decoder_reads_near_the_floor(judges, judge_data):
  """Decoder j drawing j's own aligned crop at the source's pose and expression (what a decoder
  that learns only j's crops can best do) is read, starting from the true swap's landmarks, at
  the judges' floor: the locator finds its features where j's layout puts them, up to 1.5 px
  away. Measured here (the panel): `expr_mae` 0.21 against the floor's 0.17 and guessing's 0.83,
  `pose_mae` 0.14 against 0.13. Read at the true swap's landmarks without the locator (VERSION
  9) it was 0.34 against a floor of 0.16; the judges of VERSION 7, fitted on the true swaps'
  layout only, read it at 0.64 and 0.47 (BENCHMARKS.md, "Judges")."""
  _, test = judge_data
  m = evaluate.evaluate(None, _lookup_decode_all(test, "own"), test, 2, judges=judges)
  for part in ("expr", "pose"):
    assert m[f"eval/{part}_mae"] < m[f"eval/{part}_mae_floor"] + 0.09, m
    assert m[f"eval/{part}_mae"] < 0.5 * m[f"eval/{part}_mae_guess"], m
  assert m["eval/id_transfer"] >= 0.85


def test_the_locator_finds_the_features_a_pixel_away(judges, judge_data):
  """The panel's locate (the mean of its judges') moves landmarks to where the face's eyes, nose
  and mouth are: on held-out real crops started 1 px (sd) off (0.81 px on average), to within
  0.3 px (measured 0.13, its judges 0.15 each; `locate_px` 0.12 on the panel's own draw), and
  started at the truth it stays there (0.10 px). On j's own crops at i's factors, started at the
  true face swap's landmarks (0.54 px from j's own, as drawn), it ends at j's own (0.12 px)."""
  from encdec_jax.data import render as R, synthetic
  _, test = judge_data
  x = judges_lib.face_only(test["image"] / 255.0, test["mask"])
  truth = test["landmarks"].astype(np.float32)
  start = truth + np.random.default_rng(0).normal(0.0, 1.0 / 32, truth.shape).astype(np.float32)
  err = lambda lm: float(np.abs(lm - truth).mean() * 32)  # noqa: E731
  assert err(start) > 0.7
  assert err(judges.locate(x, start)) < 0.3, err(judges.locate(x, start))
  assert err(judges.locate(x, truth)) < 0.2
  assert judges.locate_px == pytest.approx(err(judges.locate(x, start)), abs=0.1)
  rows = np.flatnonzero(test["identity"] == 0)[:16]
  own = synthetic.own_crops(0, 1, test["factors"][rows], 32, 64, "whole_face")
  t1 = R.identity_traits(0, 1)
  own_lms = np.array([synthetic.own_crop(t1, f, 32, 64, "whole_face").landmarks
                      for f in test["factors"][rows].astype(np.float64)], np.float32)
  xo = judges_lib.face_only(own, test["mask"][rows])
  begin = test["face_swap_landmarks"][rows, 1]
  gap = lambda lm: float(np.abs(lm - own_lms).mean() * 32)  # noqa: E731
  assert gap(begin) > 0.4 and gap(judges.locate(xo, begin)) < 0.25, (gap(begin), gap(judges.locate(xo, begin)))


def test_own_crops_fn_renders_once_per_faces_and_only_for_synthetic_data(tiny_config, tiny_data):
  """The evaluation's `_ideal` crops: the tiny dataset's own images at its own factors, rendered
  once for the same faces however many runs ask (one render of a sweep's held-out split, not one
  per run), read-only so no caller changes what the next one gets; image folders have none."""
  from encdec_jax import assemble
  from encdec_jax.data import loading
  _, test = tiny_data
  cfg = assemble.checked_config(tiny_config())
  rows = np.flatnonzero(test["identity"] == 1)[:4]
  first = loading.own_crops_fn(cfg)(1, test["factors"][rows])
  np.testing.assert_allclose(first, test["image"][rows] / 255.0, atol=0.5 / 255 + 1e-6)
  assert loading.own_crops_fn(cfg)(1, test["factors"][rows].copy()) is first
  assert not first.flags.writeable
  assert loading.own_crops_fn(cfg)(0, test["factors"][rows]) is not first
  folders = assemble.checked_config(tiny_config(**{"data.name": "folders", "data.root": "/nowhere"}))
  assert loading.own_crops_fn(folders) is None


def test_copying_model_scores_zero_transfer_and_the_copying_baseline(judges, judge_data):
  _, test = judge_data
  m = evaluate.evaluate(None, _lookup_decode_all(test, "copy"), test, 2, judges=judges)
  assert m["eval/id_transfer"] <= 0.05 and m["eval/id_leak"] >= 0.95
  # Its swap is the frame with its own crop pasted back: the frame, up to the crop's resampling.
  assert m["eval/swap_mae"] == pytest.approx(m["eval/swap_mae_input"], abs=1e-3)
  assert m["eval/swap_face_mae"] == pytest.approx(m["eval/swap_face_mae_input"], abs=3e-3)
  # Swapping i into i (the reconstruction) of a copying model gives back the source exactly, and
  # the judges read it as they read real faces: its identity, its expression to their floor.
  assert m["eval/recon_mae"] < 0.003  # the frame, up to the pasted crop's resampling
  assert m["eval/recon_id_accuracy"] == pytest.approx(m["eval/judge_accuracy"], abs=0.1)
  assert abs(m["eval/recon_attr_mae"] - m["eval/attr_mae_floor"]) < 0.1, m
  assert m["eval/swap_face_mae_input"] > 2 * m["eval/swap_mae_input"]  # the face is where swaps differ
  # Its decoders are perfectly sharp: blur alone is no blur, the true swaps judged as they are.
  assert m["eval/blur_sigma"] == 0.0
  assert m["eval/blur_id_transfer"] >= 0.9 and abs(m["eval/blur_attr_mae"] - m["eval/attr_mae_floor"]) < 0.1


def test_blur_alone_sharpness_is_read_from_the_reconstructions(judge_data):
  scipy_ndimage = pytest.importorskip("scipy.ndimage")
  _, test = judge_data
  x = test["image"][:8].astype(np.float32) / 255
  face = test["mask"][:8][..., :1].astype(np.float32) / 255
  for s in (0.75, 1.5):  # the blur is a Gaussian's (against scipy), and its sigma is recovered
    np.testing.assert_allclose(image_stats.blur(x, s), scipy_ndimage.gaussian_filter(
        x, (0, s, s, 0), mode="nearest", truncate=4.0), atol=1e-5)
    assert image_stats.sharpness(image_stats.blur(x, s), x, face) == s


def test_judges_cache_roundtrip_and_version(judges, tmp_path, judge_data):
  import json
  _, test = judge_data
  judge_cache.save(judges, str(tmp_path / "j"))
  back = judge_cache.load(str(tmp_path / "j"))
  assert back.accuracy == judges.accuracy and back.attr_floor == pytest.approx(judges.attr_floor)
  x = test["image"][:4].astype(np.float32) / 255
  m, lm = test["mask"][:4], test["landmarks"][:4]
  np.testing.assert_array_equal(back.identify(x, m), judges.identify(x, m))
  np.testing.assert_allclose(back.attributes(x, m, lm), judges.attributes(x, m, lm), atol=1e-5)
  assert back.locate_px == judges.locate_px and len(back.members) == len(judges.members) == 3
  assert all(m.locator is not None for m in back.members)
  np.testing.assert_array_equal(back.locate(x, lm), judges.locate(x, lm))
  meta = json.load(open(tmp_path / "j" / "panel.json"))
  meta["version"] = judges_lib.VERSION - 1
  json.dump(meta, open(tmp_path / "j" / "panel.json", "w"))
  assert judge_cache.load(str(tmp_path / "j")) is None  # an older judge is refitted, never misread


def test_preview_shows_input_true_face_swaps_converted_and_raw(judge_data):
  """Columns: input frame | its crop | true face swap into 0, 1 | converted swap into 0, 1 (pasted
  back into the frame) | raw output 0, 1 (crops shown at the frame's size)."""
  _, test = judge_data
  decode_all = _lookup_decode_all(test, "perfect")
  g = preview.preview_grid(None, decode_all, test, 2, per_identity=1)
  assert g.shape == (2 * 65 + 1, 8 * 65 + 1, 3)
  cell = lambda r, c: g[1 + 65 * r:65 * (r + 1), 1 + 65 * c:65 * (c + 1)]
  row0 = np.flatnonzero(test["identity"] == 0)[0]
  np.testing.assert_array_equal(cell(0, 0), test["frame"][row0])
  np.testing.assert_array_equal(cell(0, 1), np.repeat(np.repeat(test["image"][row0], 2, 0), 2, 1))
  np.testing.assert_array_equal(cell(0, 3), test["face_swaps"][row0, 1])
  x = test["image"][row0:row0 + 1].astype(np.float32) / 255
  raw = np.asarray(decode_all(None, x))[1]
  conv = convert.into_frames(test["frame"][row0:row0 + 1].astype(np.float32) / 255, raw,
                             test["mask"][row0:row0 + 1, ..., :1].astype(np.float32) / 255,
                             test["transform"][row0:row0 + 1])
  np.testing.assert_array_equal(cell(0, 5), np.round(conv[0] * 255).astype(np.uint8))


def test_pose_expression_estimates_stay_in_the_factors_range(judges, judge_data):
  """A linear readout of a face it was not fitted on (here: blurred flat) extrapolates past any
  real face; the judge clips to the training factors' range."""
  _, test = judge_data
  flat = np.broadcast_to(test["image"].astype(np.float32).mean((1, 2), keepdims=True) / 255,
                         test["image"].shape)
  one = judges.members[0]
  raw = one._patches(judges_lib.face_only(flat, test["mask"]), test["landmarks"]) @ one.regressor
  est = one.attributes(flat, test["mask"], test["landmarks"])
  lo, hi = judges.attr_range
  assert np.all(est >= lo - 1e-6) and np.all(est <= hi + 1e-6)
  assert np.any((raw < lo) | (raw > hi))  # so the clipping mattered


def test_pose_expression_judge_is_not_fooled_by_invisible_noise(judges, judge_data):
  """Held-out renderings with pixel noise of sd 0.025 (face MAE 0.02: invisible at 32 px, smaller
  than any decoder's error) are the same faces: the judge reads them near its floor and far from
  guessing. Measured: 0.23 against the floor 0.15 and guessing 0.8 (whole_face crops; on head
  shots 0.27 against 0.23; a judge fitted without noisy copies: 0.67 against 0.18, as bad as a
  reconstruction that visibly draws the expression). Its identity judge too: every noisy face
  still recognised."""
  _, test = judge_data
  x = judges_lib.judged_view(test)["image"]  # the crops of the frames, as everything is judged
  noisy = np.clip(x + np.random.default_rng(1).normal(0, 0.025, x.shape), 0, 1).astype(np.float32)
  truth = (test["factors"][:, :7] - judges.attr_mean) / judges.attr_std
  err = np.abs(judges.attributes(noisy, test["mask"], test["landmarks"]) - truth).mean(0)
  assert err[judges.readable].mean() < judges.attr_floor + 0.15 * judges.attr_guess_mean, (err, judges.attr_floors)
  assert err[judges.readable].mean() < 0.4 * judges.attr_guess_mean
  assert (judges.identify(noisy, test["mask"]) == test["identity"]).mean() >= 0.95
