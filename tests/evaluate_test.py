"""Evaluation and swapping through cheap seams: stand-in decoders, and untrained models assembled
without a Trainer."""
import jax
import numpy as np
import pytest

from encdec_jax import assemble, convert, decode, evaluate, image_stats, inference, models
from tests.helpers import init_params, swapped


def test_three_identities_score_every_ordered_pair(tiny_config):
  """N = 3: six swap pairs, each with its own keys; the headline is their mean. A decoder that
  copies its input scores the copying baseline on every pair, and reconstructs, up to the
  resampling of its crop pasted back into the frame."""
  from encdec_jax.data import loading
  cfg = assemble.checked_config(tiny_config(**{"data.identities": 3, "data.train_per_identity": 8,
                                               "data.test_per_identity": 4, "train.batch_size": 2}))
  _, test = loading.load_data(cfg)
  copy = lambda params, x: np.repeat(np.asarray(x)[None], 3, axis=0)
  out = evaluate.evaluate(None, copy, test, 3)
  pairs = [f"{i}to{j}" for i in range(3) for j in range(3) if i != j]
  assert sorted(k.split("/")[-1] for k in out if k.startswith("eval/swap_face_mae/")) == sorted(pairs)
  for p in pairs:
    assert out[f"eval/swap_face_mae/{p}"] == pytest.approx(out[f"eval/swap_face_mae_input/{p}"], rel=0.05)  # 3.1% at most measured (16 px crops)
    assert out[f"eval/swap_face_mae/{p}"] > 0.01  # the true face swap is not the input
  assert out["eval/swap_face_mae"] == pytest.approx(np.mean([out[f"eval/swap_face_mae/{p}"] for p in pairs]))
  assert max(out[f"eval/recon_mae/{i}"] for i in range(3)) < 0.2 * out["eval/swap_mae_input"]  # 0.10x measured


def test_dfaker_2x_output_is_scored_and_swapped_at_the_data_size(tiny_config, tiny_data):
  """dfaker decodes at twice the input size; evaluation and swaps resize it back with the one
  models.to_resolution."""
  cfg = assemble.checked_config(tiny_config(**{"model.arch": "dfaker"}))
  a = assemble.assemble(cfg)
  assert models.output_scale(cfg.model) == 2
  params = init_params(a.model, cfg.model)
  _, test = tiny_data
  out = evaluate.evaluate(params, decode.make_decode_all(a.model), test, 2)
  assert np.isfinite([v for v in out.values()]).all() and 0 < out["eval/swap_face_mae"] < 1
  x = test["image"][:3].astype(np.float32) / 255
  raw = swapped(a.model, params, x, 1)
  assert raw.shape == (3, 32, 32, 3)
  run = inference.Run(cfg, a.model, params, 0, ["0", "1"])
  got, mask = inference.swap(run, x, 1, masks=test["mask"][:3])
  assert got.shape == (3, 16, 16, 3)
  import tensorflow as tf  # an independent antialiased bilinear resize
  small = tf.image.resize(raw, (16, 16), method="bilinear", antialias=True).numpy()
  want = convert.convert(x, small, convert.choose_mask(None, test["mask"][:3], 16, 3))
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_runs_of_one_model_config_share_the_swap_compile(tiny_config, tiny_data):
  """A sweep's swap grid decodes every run: runs whose models are equal (the same config, other
  seeds and losses) share one compile per target; another bottleneck compiles its own. Each run
  still decodes with its own params, and the grid's quick compile gives the same numbers."""
  _, test = tiny_data
  x = test["image"][:2].astype(np.float32) / 255
  runs = []
  for over in ({}, {"seed": 1, "loss": "mae:1.0"}, {"model.bottleneck": 8}):
    cfg = assemble.checked_config(tiny_config(**over))
    a = assemble.assemble(cfg)
    params = (jax.tree.map(lambda v: v * 0.5, runs[0].params) if over.get("seed")  # other params
              else init_params(a.model, cfg.model))
    runs.append(inference.Run(cfg, a.model, params, 0, ["0", "1"]))
  before = inference.apply_swap._cache_size()
  outs = [inference.decode(r, x, 1)[0] for r in runs]
  assert inference.apply_swap._cache_size() - before <= 2  # 3 runs, 2 models (0 if compiled before)
  assert runs[0].model == runs[1].model and runs[0].model != runs[2].model
  want = models.split_output(swapped(runs[1].model, runs[1].params, x, 1))[0]
  np.testing.assert_allclose(outs[1], want, atol=1e-5)  # the second run's own params, not the first's
  assert not np.allclose(outs[0], outs[1])
  # The grid's quick compile (XLA's backend optimisation off): the same numbers.
  np.testing.assert_array_equal(inference.decode(runs[1], x, 1, quick=True)[0], outs[1])


def test_tone_gap_is_the_signed_colour_difference_inside_the_region():
  rng = np.random.default_rng(0)
  truth = rng.uniform(0.2, 0.6, size=(3, 8, 8, 3))
  region = (rng.uniform(size=(3, 8, 8, 1)) > 0.4).astype(np.float32)
  lighter = truth + 0.05 * region + 0.3 * (1 - region)  # outside the region does not count
  assert image_stats.tone_gap(lighter, truth, region) == pytest.approx(0.05, abs=1e-5)
  assert image_stats.tone_gap(truth - 0.02, truth, region) == pytest.approx(-0.02, abs=1e-5)


def test_tone_matched_takes_the_pairs_mean_gap_off_inside_the_region():
  rng = np.random.default_rng(1)
  truth = rng.uniform(0.2, 0.6, size=(4, 8, 8, 3)).astype(np.float32)
  region = (rng.uniform(size=(4, 8, 8, 1)) > 0.4).astype(np.float32)
  swaps = np.clip(truth + rng.normal(0, 0.05, truth.shape) + np.array([0.06, -0.03, 0.02]), 0, 1)
  got = image_stats.tone_matched(swaps, truth, region)
  assert abs(image_stats.tone_gap(swaps, truth, region)) > 0.01
  assert image_stats.tone_gap(got, truth, region) == pytest.approx(0.0, abs=1e-5)
  np.testing.assert_allclose(got[region[..., 0] == 0], swaps[region[..., 0] == 0], atol=1e-6)
  diff = (swaps - got)[region[..., 0] == 1]  # one constant shift per channel inside the region
  np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), atol=1e-5)


def test_a_decoder_that_copies_its_input_shows_the_sources_tone(tiny_config):
  """The copying stand-in paints the source's skin: its tone gap is the difference between the two
  identities' skin, opposite in the two directions."""
  from encdec_jax.data import loading
  cfg = assemble.checked_config(tiny_config())
  _, test = loading.load_data(cfg)
  copy = lambda params, x: np.repeat(np.asarray(x)[None], 2, axis=0)
  out = evaluate.evaluate(None, copy, test, 2)
  a, b = out["eval/swap_tone_gap/0to1"], out["eval/swap_tone_gap/1to0"]
  assert abs(a) > 0.01 and a * b < 0
  assert out["eval/swap_tone_gap"] == pytest.approx((abs(a) + abs(b)) / 2)


def test_swap_grid_shows_each_identitys_most_expressive_faces(tiny_data):
  """The grid's inputs per identity: the most closed eyes, the widest smile, the most open mouth
  (three distinct held-out faces of that identity); without factors (image folders), the first."""
  from encdec_jax.data.render import FACTOR_NAMES
  _, test = tiny_data
  for i in (0, 1):
    rows = np.flatnonzero(test["identity"] == i)
    picks = inference.grid_picks(test, i, 3)
    assert len(set(picks)) == 3 and set(picks) <= set(rows.tolist())
    for n, (k, name) in enumerate(zip(picks, inference.GRID_EXPRESSIONS)):
      col = FACTOR_NAMES.index(name)
      left = [r for r in rows if r not in picks[:n]]  # the faces not shown already
      assert test["factors"][k, col] == test["factors"][left, col].max(), name
  plain = {k: v for k, v in test.items() if k != "factors"}
  assert inference.grid_picks(plain, 1, 2) == list(np.flatnonzero(test["identity"] == 1)[:2])


def test_swap_grid_rows_need_the_same_people_not_the_same_augmentation():
  """A run of another family decodes the first run's faces with decoders of other people: left
  out, naming the field; warp or split sizes differ without changing who is shown."""
  from encdec_jax.config import DataConfig
  first = DataConfig(resolution=32)
  assert inference.grid_mismatch(first, DataConfig(resolution=32, warp=False, train_per_identity=9)) is None
  why = inference.grid_mismatch(first, DataConfig(resolution=32, seed=1))
  assert why == "other data: data.seed (0 -> 1)", why
  assert "data.face_type ('whole_face' -> 'full_face')" in inference.grid_mismatch(
      first, DataConfig(resolution=32, face_type="full_face"))


def test_without_masks_the_swaps_are_converted_inside_the_runs_face_type(tiny_data):
  """Data with neither a learned nor a stored mask (the soft-ellipse fallback): the evaluation
  converts inside the run's face type's ellipse, not the default's. A decoder that paints every
  pixel white scores each face type's own convert."""
  _, test = tiny_data
  test = {k: v for k, v in test.items() if k != "mask"}
  white = lambda params, x: np.ones((2,) + np.shape(x), np.float32)  # noqa: E731
  got = {ft: evaluate.evaluate(None, white, test, 2, face_type=ft)["eval/swap_mae"]
         for ft in ("head", "full_face")}
  s, _ = evaluate.source(test, 0, False, "head")
  assert s.face_type == "head"
  frames = s.shown
  want = {}
  for ft in ("head", "full_face"):
    m = convert.choose_mask(None, None, s.x.shape[1], len(s.x), ft)
    out = convert.into_frames(frames, np.ones_like(s.x), m, s.transforms)
    want[ft] = float(np.abs(out - frames).mean())  # how much of the frame the white face covers
  assert want["head"] != pytest.approx(want["full_face"], rel=0.05)
  assert got["head"] != pytest.approx(got["full_face"], rel=0.02)
  assert (got["head"] > got["full_face"]) == (want["head"] > want["full_face"])


def test_the_preview_decodes_in_the_evaluation_s_call_shapes(tiny_data):
  """The preview a run writes at each evaluation calls decode_all with the shapes the evaluation
  calls it with (a compiled program per shape), and shows the first held-out faces."""
  from encdec_jax import preview
  _, test = tiny_data
  shapes = []

  def decode_all(params, x):
    shapes.append(x.shape)
    return np.stack([x * 0.5, x * 0.25])  # two decoders, told apart

  evaluate.evaluate(None, decode_all, test, 2)
  evaluated, shapes[:] = set(shapes), []
  grid = preview.preview_grid(None, decode_all, test, 2, per_identity=3)
  assert shapes and set(shapes) <= evaluated, (shapes, evaluated)
  want = preview.preview_grid(None, lambda p, x: np.stack([x * 0.5, x * 0.25]), {
      k: np.concatenate([v[test["identity"] == i][:3] for i in range(2)]) for k, v in test.items()}, 2)
  np.testing.assert_array_equal(grid, want)
