import dataclasses

import numpy as np
import pytest

from encdec_jax import config as config_lib
from encdec_jax.data import pipeline, render as R, synthetic_faces as sf
from encdec_jax.data.pipeline import Augment, TrainSource


def test_render_is_deterministic_and_in_range():
  t = R.identity_traits(0, 1)
  f = R.sample_factors(np.random.default_rng(3))
  a, b = R.render(t, f, 32), R.render(t, f, 32)
  np.testing.assert_array_equal(a.image, b.image)
  assert a.image.shape == (32, 32, 3) and a.mask.shape == (32, 32, 3) and a.landmarks.shape == (4, 2)
  assert 0 <= a.image.min() and a.image.max() <= 1
  assert np.all((a.landmarks > 0) & (a.landmarks < 1))


def test_identities_and_factors_change_the_image():
  f = R.sample_factors(np.random.default_rng(0))
  a = R.render(R.identity_traits(0, 0), f, 32).image
  b = R.render(R.identity_traits(0, 1), f, 32).image
  g = f.copy()
  g[R.FACTOR_NAMES.index("mouth_open")] = 1.0 - g[R.FACTOR_NAMES.index("mouth_open")]
  c = R.render(R.identity_traits(0, 0), g, 32)
  face = R.render(R.identity_traits(0, 0), f, 32).mask[..., 0] > 0.5
  assert np.abs(a - b)[face].mean() > 0.03  # another identity, same factors
  mouth = c.mask[..., 2] > 0.5
  assert np.abs(a - c.image)[mouth].mean() > 0.02  # expression moves pixels in the mouth region


def test_stored_swaps_equal_fresh_renderings(tiny_data):
  """Each example is its frame and the aligned crop its landmarks cut (as a photo's are); the
  full-head swaps are rendered in that crop."""
  from encdec_jax.data import synthetic
  _, test = tiny_data
  res, fr = test["image"].shape[1], test["frame"].shape[1]
  for row in (0, len(test["image"]) - 1):
    i, k = int(test["identity"][row]), int(test["index"][row])
    f = sf.example_factors(0, "test", i, k)
    np.testing.assert_allclose(test["factors"][row], f.astype(np.float32))
    ti = R.identity_traits(0, i)
    frame = R.render(ti, f, fr)
    np.testing.assert_array_equal(test["frame"][row], R.to_uint8(frame.image))
    a = synthetic.transform(ti, f, res, fr, "whole_face")
    np.testing.assert_allclose(test["transform"][row], a, atol=1e-5)
    view = R.crop_view(fr, a)
    np.testing.assert_array_equal(test["image"][row], R.to_uint8(R.render(ti, f, res, view=view).image))
    for j in range(2):
      fresh = R.to_uint8(R.render(R.identity_traits(0, j), f, res, view=view).image)
      np.testing.assert_array_equal(test["swaps"][row, j], fresh)
    np.testing.assert_array_equal(test["swaps"][row, i], test["image"][row])


def test_stored_face_swaps_are_the_frame_with_the_other_face(tiny_data):
  """The true face swap of x_i into j: x_i's frame (hair, background, ears) with j's face; its
  own identity's is x_i itself (swapping i into i gives back the source)."""
  _, test = tiny_data
  res, fr = test["image"].shape[1], test["frame"].shape[1]
  for row in (0, len(test["image"]) - 1):
    i, k = int(test["identity"][row]), int(test["index"][row])
    f = sf.example_factors(0, "test", i, k)
    j = 1 - i
    fresh = R.render(R.identity_traits(0, i), f, fr, face=R.identity_traits(0, j))
    np.testing.assert_array_equal(test["face_swaps"][row, j], R.to_uint8(fresh.image))
    np.testing.assert_array_equal(test["face_swap_masks"][row, j], R.to_uint8(fresh.mask))
    # Its landmarks in the source's crop: where the judges look for j's eyes, nose and mouth.
    in_crop = R.render(R.identity_traits(0, i), f, res, face=R.identity_traits(0, j),
                       view=R.crop_view(fr, test["transform"][row]))
    np.testing.assert_allclose(test["face_swap_landmarks"][row, j], in_crop.landmarks, atol=1e-4)
    np.testing.assert_array_equal(test["face_swaps"][row, i], test["frame"][row])
    np.testing.assert_array_equal(test["face_swap_masks"][row, i], test["frame_mask"][row])


def test_training_face_swaps_take_the_stored_frames_and_give_the_same_pixels(tiny_data):
  """The judges' training face swaps reuse the training split's frames instead of rendering them
  again: the same arrays to the bit, rendered here or in 2 processes; a split in another order or
  a subset is not taken."""
  from encdec_jax.data import synthetic
  train, _ = tiny_data
  s = {"seed": 0, "identities": 2, "resolution": 16, "train_per_identity": 32, "frame_resolution": 32,
       "face_type": "whole_face"}  # the tiny dataset's settings, half its training faces
  half = {k: np.concatenate([v[:32], v[64:96]]) for k, v in train.items()}  # 32 per identity
  frames = synthetic.split_frames(half, s)
  assert frames is not None
  fresh = synthetic.training_face_swaps(**s, workers=1)
  for reused in (synthetic.training_face_swaps(**s, frames=frames, workers=1),
                 synthetic.training_face_swaps(**s, frames=frames, workers=2)):
    assert sorted(fresh) == sorted(reused)
    for k in fresh:
      np.testing.assert_array_equal(fresh[k], reused[k], err_msg=k)
  assert synthetic.split_frames({k: v[::-1] for k, v in half.items()}, s) is None  # another order
  assert synthetic.split_frames(train, s) is None  # 64 per identity: not these settings' split
  with pytest.raises(ValueError, match=r"frames: shape \(31, 32, 32, 3\), expected \(64, 32, 32, 3\)"):
    synthetic.training_face_swaps(**s, frames=frames[:31])


def test_face_swap_changes_the_face_and_keeps_the_frame():
  """Outside both faces the true face swap equals the source pixel for pixel; inside, it is
  the other identity's face (its skin), not the source's."""
  f = R.sample_factors(np.random.default_rng(4))
  ts = [R.identity_traits(0, i) for i in range(6)]
  ti, tj = max(((a, b) for a in ts for b in ts), key=lambda p: np.abs(np.subtract(p[0].skin, p[1].skin)).sum())
  src, swap = R.render(ti, f, 64), R.render(ti, f, 64, face=tj)
  outside = np.maximum(src.mask[..., 0], swap.mask[..., 0]) == 0
  assert outside.mean() > 0.5
  np.testing.assert_array_equal(swap.image[outside], src.image[outside])
  face = (swap.mask[..., 0] > 0.99) & (src.mask[..., 0] > 0.99) & (swap.mask[..., 1:].max(-1) == 0)
  # The same light on another skin: the face swap's face is the source's shading times j's skin.
  shading = lambda im, t: np.median(im[face], axis=0) / np.asarray(t.skin)
  np.testing.assert_allclose(shading(swap.image, tj), shading(src.image, ti), rtol=0.03)
  assert np.abs(np.subtract(ti.skin, tj.skin)).max() > 0.3
  np.testing.assert_array_equal(R.render(ti, f, 64, face=ti).image, src.image)


def test_masks_are_of_the_visible_face_not_the_hair():
  """Hair over the forehead is not face: the judges and the convert must not see it as face."""
  for i in range(6):
    t = R.identity_traits(0, i)
    r = R.render(t, R.sample_factors(np.random.default_rng(i)), 64)
    hair = np.all(np.abs(r.image - np.asarray(t.hair)) < 0.02, axis=-1)
    assert r.mask[..., 0][hair].max(initial=0.0) < 0.5, i


def test_dataset_version_is_in_the_cache_path(tmp_path):
  """A cache of another version is another folder (TFDS): an old one, even damaged, is never
  read; the data is built again beside it. The judges' key names the version too."""
  import shutil
  b = sf.builder(16, 2, 0, 64, 8, 32, "whole_face", str(tmp_path))
  b.download_and_prepare()
  want = sf.load_split(b, "test")
  old = b.data_path.parent / "1.0.0"
  shutil.move(str(b.data_path), str(old))  # the cache as an older release left it ...
  for f in old.glob("*.tfrecord*"):
    f.write_bytes(b"damaged")  # ... and unreadable
  b = sf.builder(16, 2, 0, 64, 8, 32, "whole_face", str(tmp_path))
  b.download_and_prepare()
  assert b.data_path.name == sf.VERSION != "1.0.0"
  got = sf.load_split(b, "test")
  np.testing.assert_array_equal(got["image"], want["image"])
  from encdec_jax import assemble
  from encdec_jax.data import loading
  from experiments.configs import original
  assert sf.VERSION in loading.dataset_key(assemble.checked_config(original.get_config("tiny")))


def test_dataset_is_deterministic(tiny_data, tmp_path):
  train, _ = tiny_data
  b = sf.builder(16, 2, 0, 64, 8, 32, "whole_face", str(tmp_path))
  again = sf.load_split(b, "train")
  for k in ("image", "mask", "identity", "factors", "landmarks"):
    np.testing.assert_array_equal(again[k], train[k])
  assert list(train["identity"][:3]) == [0, 0, 0] and list(train["index"][:3]) == [0, 1, 2]


def _source(train, aug, batch=4, seed=0):
  return pipeline.TrainSource(train["image"], train["mask"], train["identity"], 2, batch, seed, aug)


def test_batches_are_a_function_of_seed_and_step(tiny_data):
  train, _ = tiny_data
  src = _source(train, pipeline.Augment())
  a, b, c = src.batch(5), src.batch(5), src.batch(6)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["inputs"], c["inputs"])
  assert a["inputs"].shape == (2, 4, 16, 16, 3) and a["inputs"].dtype == np.float32
  d = _source(train, pipeline.Augment(), seed=1).batch(5)
  assert not np.array_equal(a["inputs"], d["inputs"])
  it = src.iterate(5)
  np.testing.assert_array_equal(next(it)["inputs"], a["inputs"])
  np.testing.assert_array_equal(next(it)["inputs"], c["inputs"])


def test_each_epoch_visits_every_image_once(tiny_data):
  train, _ = tiny_data
  src = _source(train, pipeline.Augment(), batch=8)
  seen = np.concatenate([src.indices(1, s) for s in range(64 // 8)])
  assert sorted(seen) == list(range(64))


def test_warp_touches_inputs_only(tiny_data):
  train, _ = tiny_data
  plain = _source(train, pipeline.Augment(warp=False, flip=False, color_jitter=0.0)).batch(2)
  warped = _source(train, pipeline.Augment(warp=True, warp_scale=0.05, flip=False, color_jitter=0.0)).batch(2)
  idx = _source(train, pipeline.Augment()).indices(0, 2)
  np.testing.assert_allclose(plain["targets"][0], train["image"][idx] / 255.0, atol=1e-6)
  np.testing.assert_array_equal(plain["inputs"], plain["targets"])
  np.testing.assert_array_equal(warped["targets"], plain["targets"])
  assert np.abs(warped["inputs"] - warped["targets"]).mean() > 0.005
  # input_jitter recolours the encoder's inputs only, per image and channel; the warp, the targets
  # and the other draws stay what they were.
  both = pipeline.Augment(warp=True, warp_scale=0.05, flip=False, color_jitter=0.0, input_jitter=0.3)
  jit = _source(train, both).batch(2)
  np.testing.assert_array_equal(jit["targets"], plain["targets"])
  ratio = (jit["inputs"] + 1e-3) / (warped["inputs"] + 1e-3)
  assert np.abs(jit["inputs"] - warped["inputs"]).mean() > 0.02
  spread = np.median(ratio.reshape(ratio.shape[:2] + (-1, 3)), axis=2)  # per image and channel
  assert spread.std() > 0.05 and np.abs(spread[..., 0] - spread[..., 1]).max() > 0.05


def test_zero_warp_is_identity():
  img = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
  out = pipeline.random_warp(img, np.random.default_rng(0), 0.0)
  np.testing.assert_allclose(out, img, atol=1e-5)


@pytest.mark.parametrize("flip", [True])
def test_flip_applies_to_inputs_targets_and_masks_alike(tiny_data, flip):
  train, _ = tiny_data
  b = _source(train, pipeline.Augment(warp=False, flip=flip, color_jitter=0.0), batch=16).batch(0)
  np.testing.assert_array_equal(b["inputs"], b["targets"])
  idx = _source(train, pipeline.Augment(), batch=16).indices(0, 0)
  raw = train["image"][idx] / 255.0
  flipped = [not np.allclose(b["targets"][0, k], raw[k]) for k in range(16)]
  assert 0 < sum(flipped) < 16
  for k in np.nonzero(flipped)[0]:
    np.testing.assert_allclose(b["targets"][0, k], raw[k][:, ::-1], atol=1e-6)
    np.testing.assert_allclose(b["masks"][0, k], train["mask"][idx[k]][:, ::-1] / 255.0, atol=1e-6)


@pytest.mark.parametrize("aug", [Augment(), Augment(warp=False), Augment(flip=False, color_jitter=0.0),
                                 Augment(warp_scale=0.08, input_jitter=0.3)])
def test_device_augmentation_equals_numpy(aug):
  """data.augment_on='device': the same draws, finished by a jitted function, give the numpy
  pipeline's batch; a host's share of rows gives those rows."""
  import jax
  from encdec_jax.data import device_augment
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
  masks = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
  ids = np.repeat([0, 1], 20)
  f = jax.jit(lambda raw: device_augment.augment_batch(raw, aug))
  full = TrainSource(images, masks, ids, 2, 8, seed=3, aug=aug).batch(5)
  for rows in (None, (2, 6)):
    src = TrainSource(images, masks, ids, 2, 8, seed=3, aug=aug, rows=rows)
    want, got = src.batch(5), f(src.raw_batch(5))
    assert src.raw_batch(5)["images"].dtype == np.uint8
    lo, hi = rows or (0, 8)
    for k in ("inputs", "targets", "masks"):  # a host's rows are those rows of the whole batch
      np.testing.assert_allclose(want[k], full[k][:, lo:hi], atol=1e-6, err_msg=k)
    for k in ("inputs", "targets", "masks"):
      assert got[k].shape == want[k].shape
      np.testing.assert_allclose(np.asarray(got[k]), want[k], atol=2e-5, err_msg=k)


def test_every_trait_is_the_face_s_or_the_frame_s():
  import dataclasses
  fields = {f.name for f in dataclasses.fields(R.Traits)}
  assert set(R.FACE_TRAITS) | set(R.FRAME_TRAITS) == fields
  assert not set(R.FACE_TRAITS) & set(R.FRAME_TRAITS)


def test_two_processes_preparing_the_same_dataset_both_read_it(tmp_path):
  """The second process waits on the cache lock while the first prepares; its builder, made
  before, must not read the empty split list it saw then (it raised KeyError 'splits is empty').
  Preparing it imports no TensorFlow (the images come to TFDS as PNG bytes)."""
  import os
  import subprocess
  import sys
  import textwrap
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = textwrap.dedent(f"""
      import multiprocessing as mp
      def load(d):
          from encdec_jax.data import synthetic_faces as sf
          b = sf.builder(16, 2, 5, 16, 2, 32, "whole_face", d)
          import sys
          return len(sf.load_split(b, "train")["image"]), "tensorflow" in sys.modules
      if __name__ == "__main__":
          with mp.get_context("spawn").Pool(2) as p:
              print("loaded", p.map(load, [{str(tmp_path / "tfds")!r}] * 2))
  """)
  (tmp_path / "race.py").write_text(script)  # spawned workers import their __main__ from a file
  r = subprocess.run([sys.executable, str(tmp_path / "race.py")], cwd=root, capture_output=True,
                     text=True, timeout=300, env=dict(os.environ, PYTHONPATH=root))
  assert r.returncode == 0 and "loaded [(32, False), (32, False)]" in r.stdout, (r.stdout, r.stderr[-3000:])


def test_face_types_fill_the_crop_and_the_crop_is_the_photo_paths():
  """The default face type's crops: the visible face covers at least 55% of the crop and the
  eyes are at least 10 px apart at 32 px (the head shot: 21%, 5.5 px). Each crop is rendered
  through its transform; align.crop of a 4x frame by the same transform (the photo path) gives
  the same image to within resampling."""
  from encdec_jax import align
  from encdec_jax.data import synthetic
  stats = {}
  for face_type in ("head", "whole_face"):
    cover, eyes = [], []
    for i in range(4):
      t = R.identity_traits(0, i)
      for k in range(6):
        f = synthetic.example_factors(0, "train", i, k)
        a = synthetic.transform(t, f, 32, 64, face_type)
        c = R.render(t, f, 32, view=R.crop_view(64, a))
        cover.append(c.mask[..., 0].mean())
        eyes.append(np.linalg.norm(np.diff(c.landmarks[:2] * 32, axis=0)))
        if face_type == "whole_face" and k == 0:
          big = R.to_uint8(R.render(t, f, 256).image)
          a4 = synthetic.transform(t, f, 32, 256, face_type)
          cut = align.crop(big, a4, 32) / 255.0
          assert np.abs(cut - c.image).mean() < 0.02, (i, np.abs(cut - c.image).mean())
    stats[face_type] = (np.mean(cover), np.mean(eyes))
  assert stats["whole_face"][0] >= 0.55 and stats["whole_face"][1] >= 10, stats
  assert stats["head"][0] < 0.3 and stats["head"][1] < 6, stats


def test_warp_anneal_shrinks_the_same_draws_to_none(tiny_data):
  """data.warp_anneal=k: at step s the warp's noise is the unannealed draw x (1 - s/k), none from
  step k on, and every other draw is unchanged (a resumed run sees the same batches)."""
  train, _ = tiny_data
  plain = pipeline.Augment(warp=True, warp_scale=0.05, flip=True, color_jitter=0.05)
  annealed = dataclasses.replace(plain, warp_anneal=8)
  for step, f in ((0, 1.0), (2, 0.75), (8, 0.0), (11, 0.0)):
    a, b = _source(train, plain).raw_batch(step), _source(train, annealed).raw_batch(step)
    for k in a:
      want = a[k] * f if k in ("warp_y", "warp_x") else a[k]
      np.testing.assert_allclose(b[k], want, atol=1e-12, err_msg=k)
  assert np.abs(_source(train, plain).raw_batch(2)["warp_y"]).max() > 0.01
  late = _source(train, dataclasses.replace(annealed, flip=False, color_jitter=0.0)).batch(8)
  np.testing.assert_allclose(late["inputs"], late["targets"], atol=1e-6)  # no warp left
  assert pipeline.Augment.from_config(config_lib.DataConfig(warp_anneal=8)).warp_anneal == 8
  with pytest.raises(config_lib.ConfigError, match=r"config.data.warp_anneal=-1; must be >= 0"):
    config_lib.DataConfig(warp_anneal=-1)


def test_examples_rendered_in_processes_are_the_ones_rendered_here():
  """synthetic.examples in 2 spawned processes yields the same keys, in the same order, with
  every field equal to the ones rendered in this process (the train split's and the held-out
  split's true swaps); encoded, with every image as PNG bytes of the same array."""
  from encdec_jax.data import synthetic
  settings = (3, 3, 16, 32, "whole_face")
  for split, per in (("train", 2 * synthetic.BLOCK + 3), ("test", 5)):
    here = list(synthetic.examples(settings, split, per, workers=1))
    there = list(synthetic.examples(settings, split, per, workers=2))
    assert [k for k, _ in there] == [k for k, _ in here] == [f"{i}_{k}" for i in range(3) for k in range(per)]
    for (_, a), (_, b) in zip(here, there):
      assert a.keys() == b.keys()
      for field in a:
        np.testing.assert_array_equal(np.asarray(a[field]), np.asarray(b[field]), err_msg=field)
  assert synthetic.render_workers(100) == 1 and 1 <= synthetic.render_workers(4800) <= synthetic.MAX_WORKERS
  # Encoded, as the dataset's builder asks: each image PNG bytes that decode to the same array.
  import io
  from PIL import Image
  decode = lambda x: np.asarray(Image.open(io.BytesIO(x)))  # noqa: E731
  for (k, a), (k2, b) in zip(here, synthetic.examples(settings, "test", per, workers=2, encode=True)):
    assert k == k2 and a.keys() == b.keys()
    for field in synthetic.IMAGES:
      np.testing.assert_array_equal(decode(b[field]), a[field], err_msg=field)
    for field in synthetic.IMAGE_SEQUENCES:
      assert len(b[field]) == len(a[field]) == 3, field
      np.testing.assert_array_equal(np.stack([decode(x) for x in b[field]]), np.stack(a[field]), err_msg=field)
    for field in set(a) - set(synthetic.IMAGES) - set(synthetic.IMAGE_SEQUENCES):
      np.testing.assert_array_equal(np.asarray(b[field]), np.asarray(a[field]), err_msg=field)


def test_a_larger_held_out_split_starts_with_the_smaller_one():
  """A run evaluated again with more held-out faces (data.test_per_identity 256 where it trained
  with 32) judges a superset of the same faces: the first 32 per identity are those 32, stored
  under another dataset name (so a cache of one size is never read as the other)."""
  from encdec_jax.data import synthetic
  settings = (3, 2, 16, 32, "whole_face")
  small = dict(synthetic.examples(settings, "test", 2, workers=1))
  large = dict(synthetic.examples(settings, "test", 3, workers=1))
  assert set(small) < set(large) and len(large) == 6
  for k, ex in small.items():
    for field in ex:
      np.testing.assert_array_equal(np.asarray(ex[field]), np.asarray(large[k][field]), err_msg=f"{k} {field}")
  assert synthetic.config_name(16, 2, 3, 4, 2, 32, "whole_face") != synthetic.config_name(16, 2, 3, 4, 3, 32, "whole_face")


def test_examples_go_on_in_this_process_where_rendering_processes_cannot_start(monkeypatch):
  """A pool that breaks after its first block (as a script without a main guard breaks it): the
  rest is rendered here, every key once, with a warning."""
  import concurrent.futures
  from encdec_jax.data import synthetic

  class Breaks:
    def __init__(self, *a, **k):
      self.calls = 0

    def __enter__(self):
      return self

    def __exit__(self, *a):
      return False

    def submit(self, fn, *args):
      self.calls += 1
      f = concurrent.futures.Future()
      if self.calls == 1:
        f.set_result(fn(*args))
      else:
        f.set_exception(concurrent.futures.process.BrokenProcessPool("no main guard"))
      return f

  monkeypatch.setattr(synthetic.concurrent.futures, "ProcessPoolExecutor", Breaks)
  settings = (0, 2, 16, 32, "whole_face")
  with pytest.warns(RuntimeWarning, match="rendering the rest in this process"):
    got = [k for k, _ in synthetic.examples(settings, "train", synthetic.BLOCK + 4, workers=2)]
  assert got == [f"{i}_{k}" for i in range(2) for k in range(synthetic.BLOCK + 4)]


def test_a_script_without_a_main_guard_renders_in_its_own_process(tmp_path, monkeypatch):
  """A spawned rendering process first runs the main script; one without a main guard would run
  all of it (and wait forever on the dataset's cache lock): its examples are rendered in this
  process, with a warning naming the script. A guarded script, `python -m` of one, and a session
  without a script file render in processes."""
  import sys
  import types
  from encdec_jax.data import synthetic
  bare, guarded = tmp_path / "bare.py", tmp_path / "guarded.py"
  bare.write_text("from encdec_jax.data import synthetic_faces\nprint('loaded')\n")
  guarded.write_text("def main():\n  pass\n\nif __name__ == '__main__':\n  main()\n")
  as_file = lambda p: types.SimpleNamespace(__spec__=None, __file__=str(p))  # noqa: E731
  as_module = lambda p: types.SimpleNamespace(__spec__=types.SimpleNamespace(origin=str(p)))  # noqa: E731
  for main, want in ((as_file(bare), str(bare)), (as_module(bare), str(bare)), (as_file(guarded), None),
                     (as_module(guarded), None), (types.SimpleNamespace(__spec__=None), None)):
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert synthetic.unguarded_main() == want, main
  pools = []
  monkeypatch.setattr(synthetic.concurrent.futures, "ProcessPoolExecutor", lambda *a, **k: pools.append(a))
  monkeypatch.setitem(sys.modules, "__main__", as_file(bare))
  with pytest.warns(RuntimeWarning, match=f"rendering in this process only: {bare} has no"):
    got = [k for k, _ in synthetic.examples((0, 2, 16, 32, "whole_face"), "train", 3, workers=2)]
  assert got == [f"{i}_{k}" for i in range(2) for k in range(3)] and pools == []


def test_making_a_builder_leaves_no_temporary_folder(tmp_path, monkeypatch):
  """TFDS's DatasetInfo made a temporary folder for a copy from its GCS bucket whenever a builder
  was made before the data was prepared, and left it (one empty /tmp/tmp*tfds per new dataset)."""
  import tempfile
  made = []
  real = tempfile.mkdtemp
  monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append((a, k)) or real(*a, dir=str(tmp_path)))
  b = sf.builder(16, 2, 11, 4, 2, 32, "whole_face", str(tmp_path / "tfds"))
  assert b.info.features["image"].shape == (16, 16, 3)
  assert made == [], made
