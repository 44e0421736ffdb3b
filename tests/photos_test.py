"""Photos in and out: alignment geometry, the detector on real and synthetic faces, extraction's
report of bad inputs, and the paste-back of a swap into its photo."""
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from encdec_jax import align, calibration, convert, decode, photos
from encdec_jax.data import composites, folders, image_files, render
from tests.helpers import swapped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC_THRESHOLD = 0.3  # the cartoon faces score lower than real ones (photos.Mtcnn)


@pytest.fixture(scope="module")
def detector():
  return photos.Mtcnn()


@pytest.fixture(scope="module")
def synthetic_detector():
  return photos.Mtcnn(SYNTHETIC_THRESHOLD)


def test_template_is_the_mean_of_the_synthetic_landmarks():
  lms = [render.render(render.identity_traits(0, i), render.sample_factors(np.random.default_rng([i, k])), 16).landmarks
         for i in range(6) for k in range(20)]
  mean = np.mean(lms, 0)
  mirrored = (mean + np.stack([1 - mean[[1, 0, 2, 3], 0], mean[[1, 0, 2, 3], 1]], -1)) / 2
  np.testing.assert_allclose(align.TEMPLATE, mirrored, atol=0.006)
  assert align.TEMPLATE[0, 0] + align.TEMPLATE[1, 0] == pytest.approx(1.0)  # symmetric


def test_similarity_recovers_a_known_transform():
  rng = np.random.default_rng(0)
  src = rng.uniform(0, 100, (5, 2))
  t, s = 0.7, 1.9
  a = np.array([[s * np.cos(t), -s * np.sin(t), 12.0], [s * np.sin(t), s * np.cos(t), -4.0]])
  np.testing.assert_allclose(align.similarity(src, align.apply(a, src)), a, atol=1e-9)
  np.testing.assert_allclose(align.apply(align.invert(a), align.apply(a, src)), src, atol=1e-9)
  assert align.scale_of(a) == pytest.approx(s)
  # A mirrored target is fitted by the best rotation, never a reflection.
  fit = align.similarity(src, src * [-1, 1])
  assert np.linalg.det(fit[:, :2]) > 0
  with pytest.raises(ValueError, match="coincide"):
    align.similarity(np.ones((3, 2)), src[:3])


def test_warp_matches_scipy():
  from scipy import ndimage
  rng = np.random.default_rng(1)
  img = rng.uniform(0, 1, (23, 31, 3)).astype(np.float32)
  a = align.similarity([[3, 4], [20, 9]], [[1, 2], [15, 18]])
  out = align.warp(img, a, 19, 17, "edge")
  b = align.invert(a)
  m = np.array([[b[1, 1], b[1, 0]], [b[0, 1], b[0, 0]]])  # (row, col) order
  for c in range(3):
    want = ndimage.affine_transform(img[..., c], m, offset=[b[1, 2], b[0, 2]], output_shape=(19, 17),
                                    order=1, mode="nearest")
    np.testing.assert_allclose(out[..., c], want, atol=1e-5)
  # Integer positions give the pixels themselves; beyond the border, "zero" fades to 0.
  np.testing.assert_array_equal(align.sample(img, np.array([2.0]), np.array([5.0]))[0], img[5, 2])
  assert align.sample(img, np.array([-1.5]), np.array([5.0]), "zero")[0].max() == 0


def _mask_in_photo(a, m, h, w):
  xs, ys = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
  return align.sample(m, a[0, 0] * xs + a[0, 1] * ys + a[0, 2], a[1, 0] * xs + a[1, 1] * ys + a[1, 2],
                      "zero")[..., 0]


@pytest.mark.parametrize("size,roll", [(64, 0.0), (96, 0.25), (128, -0.2)])
def test_identity_swap_pasted_back_gives_the_photo(size, roll):
  # Extract, then paste back the crop itself as if it were the decoded face.
  p = composites.compose([composites.Placement(1, 30, 20, size, roll)], 180, 200, seed=3)
  a = align.align_transform(p.landmarks[0], 64)
  c = align.crop(p.image, a, 64)
  m = convert.feather(convert.soft_ellipse(64)[None])[0]
  out = align.paste_back(p.image, c / 255.0, m, a)
  mp = _mask_in_photo(a, m, 180, 200)
  np.testing.assert_array_equal(out[mp == 0], p.image[mp == 0])  # exactly, outside the mask
  err = np.abs(out[mp > 0.5].astype(float) - p.image[mp > 0.5]).mean() / 255
  assert err < 0.03, err  # measured 0.011-0.021 over 12 composites: resampling down to 64 px and back
  assert (mp > 0.5).sum() > 0.3 * (size * 0.5) ** 2  # the mask covers the face
  # The crop frames the face as the template: the true landmarks land within the identities'
  # own spread (std ~0.03 of the side) of it.
  assert np.abs(align.apply(a, p.landmarks[0]) - align.template_px(64)).max() / 64 < 0.05


def test_paste_swap_changes_the_face_only_or_with_noblend_the_whole_crop():
  p = composites.compose([composites.Placement(0, 40, 30, 96, 0.1)], 180, 200, seed=2)
  lm = p.landmarks[0]
  points = np.stack([lm[0], lm[1], lm[2], lm[3] - [6, 0], lm[3] + [6, 0]])  # mouth corners around its centre
  face = photos.Face((0, 0, 1, 1), points, 1.0)
  seen = []

  def decode(x):  # a decoder that paints everything white, and has no learned mask
    seen.append(x.shape)
    return np.ones_like(x), convert.choose_mask(None, None, 32, len(x), "head")

  # The head framing: the face ellipse well inside the crop square.
  a = align.align_transform(face.landmarks(), 32, "head")
  inside = _mask_in_photo(a, convert.feather(convert.soft_ellipse(32, "head")[None])[0], 180, 200)
  blended = photos.paste_swap(p.image, face, decode, 32, face_type="head")
  assert seen == [(1, 32, 32, 3)]
  changed = (blended != p.image).any(-1)
  assert not changed[inside == 0].any() and (blended[inside > 0.99] >= 250).all()
  square = photos.paste_swap(p.image, face, decode, 32, blend=False, face_type="head")
  changed_sq = (square != p.image).any(-1)
  # Without the blend the whole crop is pasted up to the circle inscribed in it: its area in the
  # photo, pi / 4 x (32 / scale)^2.
  assert changed_sq.sum() == pytest.approx(np.pi / 4 * (32 / align.scale_of(a)) ** 2, rel=0.15)
  assert changed_sq.sum() > 1.5 * changed.sum()


def test_a_face_partly_outside_the_photo_is_cropped_and_pasted_without_error():
  p = composites.compose([composites.Placement(0, 0, 0, 96, 0.0)], 100, 100)
  a = align.align_transform(p.landmarks[0] - [40, 40], 64)  # as if the face were half outside
  c = align.crop(p.image, a, 64)
  out = align.paste_back(p.image, np.zeros((64, 64, 3)), np.ones((64, 64, 1)), a)
  assert c.shape == (64, 64, 3) and out.shape == p.image.shape and (out == 0).all(-1).any()


def test_choose_faces_reports_small_and_several():
  f = lambda s: photos.Face((0, 0, s, s), np.zeros((5, 2)), 0.9)  # noqa: E731
  got = photos.choose_faces([f(30), f(80), f(50)], min_face=40, largest=False)
  assert [x.size for x in got.faces] == [80, 50] and got.detected == 3
  assert set(got.problems) == {"too_small", "several_faces"} and "30" in got.problems["too_small"]
  assert [x.size for x in photos.choose_faces([f(50), f(80)], 40, largest=True).faces] == [80]
  assert photos.choose_faces([], 40, False).problems == {"no_face": "no face detected"}
  with pytest.raises(ValueError, match=r"--threshold=1.5; must be in \(0, 1\)"):
    photos.Mtcnn(1.5)


def test_detector_finds_the_astronaut_where_an_independent_detector_does(detector, synthetic_detector):
  from skimage import data, feature
  img = data.astronaut()
  faces = detector(img)
  assert len(faces) == 1 and faces[0].score > 0.99
  # scikit-image's LBP cascade (a different method and training set) as the reference box.
  ref = feature.Cascade(data.lbp_frontal_face_cascade_filename()).detect_multi_scale(
      img, scale_factor=1.2, step_ratio=1, min_size=(60, 60), max_size=(123, 123))
  assert len(ref) == 1
  r = ref[0]
  rb = (r["c"], r["r"], r["c"] + r["width"], r["r"] + r["height"])
  b = faces[0].box
  inter = max(0, min(b[2], rb[2]) - max(b[0], rb[0])) * max(0, min(b[3], rb[3]) - max(b[1], rb[1]))
  union = (b[2] - b[0]) * (b[3] - b[1]) + (rb[2] - rb[0]) * (rb[3] - rb[1]) - inter
  assert inter / union > 0.5
  eyes = faces[0].landmarks()[:2]
  assert rb[0] < eyes[:, 0].min() and eyes[:, 0].max() < rb[2] and eyes[0, 0] < eyes[1, 0]
  # A photo longer than detect_side is searched shrunk, its face scaled back to photo pixels.
  big = np.asarray(Image.fromarray(img).resize((1024, 1024), Image.Resampling.BICUBIC))
  shrunk = photos.Mtcnn(detect_side=512)(big)
  assert len(shrunk) == 1
  np.testing.assert_allclose(np.array(shrunk[0].box), np.array(b) * 2 + 0.5, atol=1.5)
  np.testing.assert_allclose(shrunk[0].points, (faces[0].points + 0.5) * 2 - 0.5, atol=1.5)
  # At the synthetic threshold a small false face appears, and --min_face drops it.
  low = synthetic_detector(img)
  assert len(low) == 2 and low[1].size < 40
  assert len(photos.choose_faces(low, 40, False).faces) == 1


def test_detection_and_alignment_on_synthetic_composites(synthetic_detector):
  found, errs, lm_errs = 0, [], []
  for i in range(12):
    p = composites.random_photo(i, i % 3)
    faces = synthetic_detector(p.image)
    if not faces:
      continue
    found += 1
    assert len(faces) == 1
    truth = p.landmarks[0]
    # Alignment error: where the true landmarks land in the crop cut by the detected landmarks,
    # against where they land in the crop cut by the true ones, as a fraction of the side of a
    # "head" crop (a closer face type multiplies it by its zoom).
    a, t = align.align_transform(faces[0].landmarks(), 64, "head"), align.align_transform(truth, 64, "head")
    errs.append(np.abs(align.apply(a, truth) - align.apply(t, truth)).max() / 64)
    lm_errs.append(np.linalg.norm(faces[0].landmarks() - truth, axis=1).mean()
                   / np.linalg.norm(truth[1] - truth[0]))
  # Measured: 12 of 12 found (82% of 80 composites at this threshold); alignment error mean
  # 0.041, worst 0.105 of the side (2.6 and 6.7 px at 64 px); landmarks off by 0.26 inter-ocular
  # distances on average (MTCNN was trained on real faces, these are cartoons).
  assert found >= 10, found
  assert np.mean(errs) < 0.06 and np.max(errs) < 0.15, errs
  assert np.mean(lm_errs) < 0.4, lm_errs


def _jpeg_with_orientation_6(img):
  """The JPEG of an image stored rotated, with the EXIF tag that turns it upright."""
  buf = io.BytesIO()
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 CW to view"
  Image.fromarray(img).transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=95, exif=exif)
  return buf.getvalue()


def test_extract_cli_lists_every_bad_input_and_its_crops_feed_the_folders(tmp_path):
  from skimage import data
  from tests.folders_test import _png_claiming
  inp = tmp_path / "photos"
  inp.mkdir()
  for k in (1, 2):
    Image.fromarray(composites.random_photo(k, 0).image).save(inp / f"face{k}.png")
  two = composites.compose([composites.Placement(0, 4, 10, 112, 0.0), composites.Placement(1, 150, 30, 104, 0.1)],
                           160, 260, seed=0)
  Image.fromarray(two.image).save(inp / "two.png")
  (inp / "rotated.jpg").write_bytes(_jpeg_with_orientation_6(composites.random_photo(2, 0).image))
  Image.fromarray(data.astronaut()).save(inp / "astronaut.jpg", quality=95)  # + a 23 px false face
  Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(inp / "blank.png")
  (inp / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
  (inp / "text.jpg").write_text("not an image")
  Image.fromarray(composites.random_photo(1, 0).image).save(inp / "anim.gif")  # a type not read
  out = tmp_path / "faces" / "alice"
  r = subprocess.run([sys.executable, "-m", "experiments.extract", f"--input={inp}", f"--output={out}",
                      f"--threshold={SYNTHETIC_THRESHOLD}", "--size=32"],
                     cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  rep = json.load(open(out / "extract_report.json"))
  assert rep["problems"] == {"unreadable": ["text.jpg"], "too_large": ["huge.png"], "no_face": ["blank.png"],
                             "too_small": ["astronaut.jpg"], "several_faces": ["two.png"],
                             "exif_rotated": ["rotated.jpg"], "unsupported": ["anim.gif"], "low_score": []}, rep["problems"]
  made = [c for r in rep["files"] for c in r.get("crops", [])]  # every crop's score and residual
  assert len(made) == 6 and all(c["score"] >= SYNTHETIC_THRESHOLD and 0 <= c["residual"] < 0.1 for c in made), made
  assert "huge.png: header claims too many pixels" in r.stdout
  crops = sorted(f for f in os.listdir(out) if f.endswith(".png"))
  assert crops == ["astronaut_0.png", "face1_0.png", "face2_0.png", "rotated_0.png", "two_0.png", "two_1.png"]
  # Each crop has its alignment beside it, and the transform cuts that crop from the photo.
  info = json.load(open(out / "two_1.json"))
  assert info["source"] == "two.png" and info["size"] == 32 and len(info["points"]) == 5
  assert info["face_type"] == "whole_face" == rep["face_type"]  # the synthetic faces' default framing
  again = align.crop(two.image, np.array(info["transform"]), 32)
  np.testing.assert_array_equal(again, np.asarray(Image.open(out / "two_1.png")))
  # The second face of two.png is identity 1's, at 150..254: its box says so.
  assert 140 < info["box"][0] < info["box"][2] < 260
  # The EXIF-rotated photo was turned upright first: its crop is upright like the others.
  rot = json.load(open(out / "rotated_0.json"))
  up = align.align_transform(composites.random_photo(2, 0).landmarks[0], 32, "whole_face")
  assert np.abs(np.array(rot["transform"]) - up).max() < 0.3 * np.abs(up).max()
  # The crop folder feeds data.name=folders as it is (the JSON files are ignored there).
  s = folders.scan(str(tmp_path / "faces"), 16, 8)
  assert s.files["alice"] == [os.path.join("alice", c) for c in crops] and not s.skipped
  assert all(i.endswith(".json") for i in s.ignored)
  # Bad flags are one line, before the detector loads.
  bad = subprocess.run([sys.executable, "-m", "experiments.extract", f"--input={inp}",
                        f"--output={inp / 'x'}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert bad.returncode != 0 and "inside --input" in bad.stderr and "Traceback" not in bad.stderr
  # Extracting again into the filled folder is refused: no crop or report of this run is replaced.
  before = {f: (out / f).read_bytes() for f in os.listdir(out)}
  again = subprocess.run([sys.executable, "-m", "experiments.extract", f"--input={inp}", f"--output={out}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert again.returncode != 0 and "already holds" in again.stderr and "Traceback" not in again.stderr
  assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before


def test_output_folder_must_be_new_or_empty_and_outside_the_input(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  inp.mkdir()
  assert photos.output_problem(str(inp), str(out), "crops") is None          # new: made later
  out.mkdir()
  assert photos.output_problem(str(inp), str(out), "crops") is None          # empty
  (out / "alice_001_0.png").write_bytes(b"x")
  assert "already holds 1 file(s) (alice_001_0.png)" in photos.output_problem(str(inp), str(out), "crops")
  assert "is inside --input" in photos.output_problem(str(inp), str(inp / "sub"), "swaps")
  assert "is the input folder" in photos.output_problem(str(inp), str(inp), "swaps")
  assert "is a file" in photos.output_problem(str(inp), str(out / "alice_001_0.png"), "swaps")


def _readme_commands(section: str) -> list[list[str]]:
  """The shell commands of the README section's first bash block, one argv each."""
  import shlex
  text = open(os.path.join(ROOT, "README.md")).read()
  block = text.split(f"## {section}\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
  return [shlex.split(c) for c in block.replace("\\\n", " ").strip().splitlines()]


def test_readme_photos_to_swapped_photos_in_four_commands(tmp_path):
  """The README's four commands, as written, on synthetic photos of two people: extract both,
  train (the tiny variant, 4 steps, instead of small), swap alice's photos into bob. Then the
  same run swaps a folder of aligned crops with odd files among them."""
  env = {**os.environ, "PYTHONPATH": ROOT}
  run = lambda argv: subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)  # noqa: E731
  r = run([sys.executable, "-m", "experiments.make_photos", "--output=photos", "--per_identity=18"])
  assert r.returncode == 0, r.stderr[-2000:]
  cmds = _readme_commands("From your photos")
  assert [c[2] for c in cmds] == ["experiments.extract", "experiments.extract", "experiments.train",
                                  "experiments.swap"]
  for c in cmds:
    c[0] = sys.executable
    c[:] = [a.replace("=experiments/configs/original.py:small", f"={ROOT}/experiments/configs/original.py:tiny")
            for a in c]
    if c[2] == "experiments.train":
      c += ["--config.train.steps=4", f"--config.data.dir={tmp_path / 'tfds'}", "--config.eval.tone=train"]
    else:
      c += [f"--threshold={SYNTHETIC_THRESHOLD}"]
    r = run(c)
    assert r.returncode == 0, (c, r.stdout[-2000:], r.stderr[-3000:])
  extracted = json.load(open(tmp_path / "faces" / "alice" / "extract_report.json"))
  assert extracted["crops"] >= 12  # data.test_per_identity 8 + train.batch_size 4
  rep = json.load(open(tmp_path / "swapped" / "swap_report.json"))
  assert rep["run"] == "alice_bob" and rep["identity"] == "bob" and rep["written"] >= 12
  truth = json.load(open(tmp_path / "photos" / "alice" / "landmarks.json"))["photos"]
  for rec in rep["files"]:
    if rec["output"] is None:
      assert rec["problems"] and rec["file"] not in [c.rsplit("_", 1)[0] + ".png" for c in os.listdir(tmp_path / "faces" / "alice")]
      continue
    before = np.asarray(Image.open(tmp_path / "photos" / "alice" / rec["file"]))
    out = Image.open(tmp_path / "swapped" / rec["output"])
    after = np.asarray(out)
    assert after.shape == before.shape and out.info["encdec_jax:synthetic"] == "true"
    assert out.info["encdec_jax:run"] == "alice_bob" and out.info["encdec_jax:input_kind"] == "photo"
    changed = np.argwhere((after != before).any(-1))
    assert len(changed) > 0
    # Only the face changed: every changed pixel is near it, and the face is inside the change.
    # The blend ellipse reaches ~3.2 eye-to-mouth spans from the landmarks' centre, and MTCNN's
    # crops of these cartoons are up to 1.4x larger than the true landmarks' (measured: scale
    # ratio 0.72-0.99 on these photos), so 6 spans.
    lm = np.array(truth[rec["file"]][0])
    span = np.linalg.norm(lm[3] - (lm[0] + lm[1]) / 2)
    far = np.linalg.norm(changed[:, ::-1] - lm.mean(0), axis=1) > 6 * span
    assert (changed[:, ::-1].min(0) < lm.min(0)).all() and (changed[:, ::-1].max(0) > lm.max(0)).all()
    assert not far.any(), (rec["file"], far.sum())

  _swap_crops_cli(tmp_path, tmp_path / "runs" / "alice_bob", sorted((tmp_path / "faces" / "alice").glob("*.png"))[:2], run)


def _swap_crops_cli(tmp_path, workdir, crops, run):
  """experiments.swap on aligned crops: every input its own output, bad files listed, pixels the
  convert of the swap, provenance without local paths, clear errors."""
  from encdec_jax import inference
  inp = tmp_path / "crops"
  inp.mkdir()
  for k, c in enumerate(crops):
    Image.open(c).save(inp / f"face{k}.png")
  Image.open(crops[1]).save(inp / "face1.jpg", quality=95)  # the same stem as face1.png
  Image.open(crops[0]).save(os.fsdecode(os.path.join(os.fsencode(inp), b"caf\xe9.png")))
  (inp / "broken.jpg").write_text("not an image")
  (inp / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")  # a type not read: listed
  os.mkfifo(inp / "pipe.png")  # opening it would wait forever
  swap = [sys.executable, "-m", "experiments.swap", f"--workdir={workdir}", "--to=bob", f"--input={inp}"]
  inside = run(swap + [f"--output={inp / 'swapped'}"])
  assert inside.returncode != 0 and "is inside --input" in inside.stderr and "Traceback" not in inside.stderr
  r = run(swap + [f"--output={tmp_path / 'out'}", "--mark"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "4 swapped images" in r.stdout and "broken.jpg: not a readable image" in r.stdout
  assert "pipe.png: not a regular file" in r.stdout and "(4 crops, 0 photos; 6 inputs)" in r.stdout
  # Every input has its own output: no stem collision replaces one with another.
  assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == sorted(
      [b"caf\xe9.png", b"face0.png", b"face1.jpg.png", b"face1.png.png", b"swap_report.json"])
  report = json.load(open(tmp_path / "out" / "swap_report.json"))
  assert report["problems"]["unreadable"] == ["broken.jpg", "pipe.png"] and report["written"] == 4
  assert report["problems"]["unsupported"] == ["phone.heic"] and "phone.heic: not one of" in r.stdout
  odd = Image.open(os.fsdecode(os.path.join(os.fsencode(tmp_path / "out"), b"caf\xe9.png")))
  assert odd.info["encdec_jax:source"] == "caf\\xe9.png"
  im = Image.open(tmp_path / "out" / "face0.png")
  assert im.size == (16, 16) and im.info["encdec_jax:synthetic"] == "true"
  assert im.info["encdec_jax:step"] == "4" and im.info["encdec_jax:identity"] == "bob"
  # The run is named by its folder and config hash, never by a local path (photos get shared).
  assert im.info["encdec_jax:run"] == "alice_bob" and len(im.info["encdec_jax:config_sha256"]) == 12
  assert not any(str(tmp_path) in v for v in im.info.values())
  assert tuple(np.asarray(im)[-1, -1]) == (255, 0, 200)  # the visible corner mark
  # Its pixels are the convert of the swap into --to (outside the mark's corner), its colour
  # calibrated on the run's training faces (the run has eval.tone=train).
  assert im.info["encdec_jax:tone"] == "train"
  r_ = inference.load_run(str(workdir))
  stored = inference.colour_shifts(r_)  # what its final evaluation wrote (tone.json), no data read
  with contextlib.chdir(tmp_path):  # the run's data.root is relative to where it trained
    np.testing.assert_allclose(inference.colour_shifts(r_, reuse=False), stored, atol=1e-6)
  shift = calibration.into(stored, 1)
  assert np.abs(shift).max() > 1e-4
  x = image_files.load_image(str(inp / "face0.png"), 16, 8)[0][None].astype(np.float32) / 255
  y = decode.take_off(swapped(r_.model, r_.params, x, 1), shift)
  want = convert.convert(x, y, convert.soft_ellipse(16)[None])[0]
  keep = np.ones((16, 16), bool)
  keep[8:, 8:] = False
  np.testing.assert_allclose(np.asarray(im)[keep] / 255, want[keep], atol=1 / 255 + 1e-6)
  assert np.abs(want - x[0]).max() > 0.05  # and not the input
  again = run(swap + [f"--output={tmp_path / 'out'}"])  # a second swap into the same folder
  assert again.returncode != 0 and "already holds 5 file(s)" in again.stderr and "Traceback" not in again.stderr
  bad = run(swap[:4] + ["--to=carol", f"--input={inp}", f"--output={tmp_path / 'out2'}"])
  assert bad.returncode != 0 and "--to='carol' is not an identity of this run; valid: ['alice', 'bob']" in bad.stderr


@pytest.mark.parametrize("names", [
    ["x.png", "x.jpg", "x.png.png", "x.jpg.png"],     # whole names + .png collide with other inputs
    ["x.png", "x.png.png"],                          # extract's stems: x.png_0.png twice
    ["A.png", "a.jpg", "a.png.PNG"],                 # the same on a case-insensitive file system
    ["x.png", "x.jpg", "x.png.png", "x.png-2.png"],  # the suffix itself taken
])
def test_output_names_never_collide_and_stems_stay_distinct(names):
  from encdec_jax import photos
  out = photos.output_names(names)
  assert sorted(out) == sorted(names) and all(v.endswith(".png") for v in out.values())
  assert len({v.lower() for v in out.values()}) == len(names), out
  stems = {os.path.splitext(v)[0].lower() for v in out.values()}  # extract writes STEM_k.png
  assert len(stems) == len(names)
  assert photos.output_names(list(reversed(names))) == out  # not the order they were listed in


def test_reports_name_files_not_paths_and_an_invalid_exif_orientation_is_not_applied(tmp_path):
  bad = tmp_path / "secret_user" / "x.jpg"
  bad.parent.mkdir()
  bad.write_bytes(b"\xff\xd8 not a jpeg")
  with pytest.raises(ValueError) as e:
    image_files.open_rgb(str(bad))
  assert "secret_user" not in str(e.value) and "not a readable image" in str(e.value)
  img = np.zeros((8, 12, 3), np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 9  # not an orientation (1-8)
  Image.fromarray(img).save(tmp_path / "nine.jpg", exif=exif)
  im, notes = image_files.open_rgb(str(tmp_path / "nine.jpg"))
  assert im.size == (12, 8) and notes == ["EXIF orientation 9 is not valid (1-8): ignored"]


def test_make_photos_refuses_names_that_leave_the_output_folder(tmp_path):
  from experiments.make_photos import names_error
  for names in ("..,bob", "alice,../x", ".,bob", "alice,alice", ",bob", ".hidden,bob"):
    assert "need distinct plain folder names" in names_error(names.split(",")), names
  assert names_error(["alice", "bob"]) is None
  r = subprocess.run([sys.executable, "-m", "experiments.make_photos", f"--output={tmp_path / 'p'}",
                      "--names=alice,../x", "--per_identity=1"], cwd=ROOT, capture_output=True, text=True,
                     timeout=120)  # the command refuses before writing anything
  assert r.returncode != 0 and "need distinct plain folder names" in r.stderr and "Traceback" not in r.stderr
  assert not os.path.exists(tmp_path / "p") and os.listdir(tmp_path) == []


def test_min_score_drops_unsure_faces_and_the_residual_measures_the_fit():
  tpl = align.template_px(64)
  pts = np.array([tpl[0], tpl[1], tpl[2], tpl[3] - [6, 0], tpl[3] + [6, 0]])  # mouth corners around the centre
  sure, unsure = photos.Face((0, 0, 64, 64), pts, 0.97), photos.Face((0, 0, 60, 60), pts, 0.5)
  found = photos.choose_faces([sure, unsure], 0, False, min_score=0.9)
  assert found.faces == [sure] and found.problems == {"low_score": "1 face(s) below --min_score=0.9 (scores 0.500)"}
  assert photos.choose_faces([sure, unsure], 0, False).faces == [sure, unsure]
  rotated = (pts - 32) @ np.array([[0.8, -0.6], [0.6, 0.8]]).T * 1.7 + 100  # a similarity: fits exactly
  assert photos.residual(photos.Face((0, 0, 1, 1), rotated, 1.0), 64) < 1e-6
  bent = pts.copy()
  bent[2] += [10, 0]  # the nose 10 px off a 64 px template: a face a similarity cannot fit
  assert 0.02 < photos.residual(photos.Face((0, 0, 1, 1), bent, 1.0), 64) < 0.1
