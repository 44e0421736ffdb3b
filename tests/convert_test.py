"""The convert: a decoded face blended into its frame inside a (feathered) face mask."""
import numpy as np
from PIL import Image
import pytest

from encdec_jax import convert
from encdec_jax.data import render


def test_convert_blends_inside_the_feathered_mask():
  """Inside the mask the decoded face, far outside the frame, a ramp at the edge."""
  frame = np.zeros((1, 32, 32, 3), np.float32)
  face = np.ones((1, 32, 32, 3), np.float32)
  mask = np.zeros((1, 32, 32, 1), np.float32)
  mask[0, 8:24, 8:24] = 1.0
  out = convert.convert(frame, face, mask, sigma=1 / 32)
  assert out[0, 16, 16, 0] == pytest.approx(1.0, abs=1e-3) and out[0, 2, 2, 0] == pytest.approx(0.0, abs=1e-6)
  edge = out[0, 16, 6:11, 0]
  assert np.all(np.diff(edge) > 0) and 0.3 < out[0, 16, 8, 0] < 0.7  # smooth, centred on the edge
  np.testing.assert_array_equal(convert.convert(frame, face, mask, sigma=0.0)[..., :1], mask)


def test_convert_takes_the_learned_mask_inside_the_data_mask():
  """Decoder j's mask where it draws its face, the frame's where the frame shows its face: a
  swap pastes neither j's hair line (learned 0) nor over the frame's hair (data 0)."""
  learned = np.full((2, 8, 8, 1), 0.25, np.float32)
  learned[:, :2] = 0.0  # j's hair line across the top
  learned[:, 6:] = 1.0
  data = np.full((2, 8, 8, 3), 255, np.uint8)
  data[:, :, :3, 0] = 0  # the frame's hair down the left side
  m = convert.choose_mask(learned, data)
  assert m.shape == (2, 8, 8, 1)
  np.testing.assert_array_equal(m[:, :2], 0.0)
  np.testing.assert_array_equal(m[:, :, :3], 0.0)
  np.testing.assert_array_equal(m[:, 2:6, 3:], 0.25)
  np.testing.assert_array_equal(m[:, 6:, 3:], 1.0)
  np.testing.assert_array_equal(convert.choose_mask(learned, None), learned)  # photos: no data mask
  np.testing.assert_array_equal(convert.choose_mask(None, np.full((2, 8, 8, 3), 255, np.uint8)),
                                np.ones((2, 8, 8, 1), np.float32))
  np.testing.assert_array_equal(convert.choose_mask(None, None, 8, 2)[0], convert.soft_ellipse(8))


def test_soft_ellipse_is_the_synthetic_face_and_keeps_the_border():
  m = convert.soft_ellipse(32, "head")
  assert m[18, 16, 0] == pytest.approx(1.0) and m[0, 0, 0] == 0.0 and m[18, 0, 0] == 0.0
  assert m[2, 16, 0] == 0.0 and m[18, 3, 0] == 0.0  # hair and ears stay the frame's
  assert 0.0 < m[18, 7, 0] < 1.0 or 0.0 < m[18, 8, 0] < 1.0  # a soft edge, not a step
  # Its centre and radii are the moments of the synthetic data's mean face mask.
  masks = [render.render(render.identity_traits(0, i), render.sample_factors(np.random.default_rng([i, k])), 32).mask[..., 0]
           for i in range(20) for k in range(3)]
  w = np.mean(masks, 0) / np.mean(masks, 0).sum()
  t = (np.arange(32) + 0.5) / 32
  y, x = np.meshgrid(t, t, indexing="ij")
  cx, cy = (w * x).sum(), (w * y).sum()
  got = {"cx": cx, "cy": cy, "rx": 2 * np.sqrt((w * (x - cx) ** 2).sum()), "ry": 2 * np.sqrt((w * (y - cy) ** 2).sum())}
  for k, v in convert.FACE_ELLIPSE.items():
    assert got[k] == pytest.approx(v, abs=0.015), (k, got)


def test_face_types_zoom_the_face_ellipse_with_the_template():
  """In the default face type's crops the zoomed ellipse is the face: it overlaps the crops'
  mean face mask (IoU 0.82 measured; the head ellipse 0.36, full_face's 0.70)."""
  from encdec_jax.data import synthetic
  masks = []
  for i in range(8):
    t = render.identity_traits(0, i)
    for k in range(3):
      f = render.sample_factors(np.random.default_rng([i, k]))
      a = synthetic.transform(t, f, 32, 64, "whole_face")
      masks.append(render.render(t, f, 32, view=render.crop_view(64, a)).mask[..., 0])
  m = np.mean(masks, 0) > 0.5
  iou = lambda ft: ((convert.soft_ellipse(32, ft)[..., 0] > 0.5) & m).sum() / (
      (convert.soft_ellipse(32, ft)[..., 0] > 0.5) | m).sum()
  assert iou("whole_face") > 0.75 and iou("head") < 0.5, (iou("whole_face"), iou("head"))


def _framed(k: int, face_type: str = "whole_face", size: int = 32, frame: int = 64):
  """A held-out example's pieces, rendered: (source traits, other traits, factors, transform)."""
  from encdec_jax.data import synthetic
  ti, tj = render.identity_traits(0, 0), render.identity_traits(0, 1)
  f = synthetic.example_factors(0, "test", 0, k)
  f[render.FACTOR_NAMES.index("roll")] = 0.2  # a turned, shifted, scaled head: a known transform
  f[render.FACTOR_NAMES.index("shift_x")] = 0.05
  return ti, tj, f, synthetic.transform(ti, f, size, frame, face_type)


def test_paste_back_puts_the_face_where_the_true_face_swap_has_it():
  """A perfect decoder's swap (the true face swap, in the source's aligned crop) pasted back into
  the source's frame by convert.into_frames (the path photos take) lands where the true face swap
  has its face: within resampling error where the paste covers the faces, the frame itself
  outside. Off by two pixels, the same paste is several times further off. (The crop does not
  hold the whole face: at its edges, chin and cheeks stay the frame's.)"""
  from encdec_jax import align
  for k in range(3):
    ti, tj, f, a = _framed(k)
    view = render.crop_view(64, a)
    decoded = render.render(ti, f, 32, face=tj, view=view).image
    mask = render.render(ti, f, 32, view=view).mask[..., :1]
    frame = render.render(ti, f, 64)
    truth = render.render(ti, f, 64, face=tj)
    pasted_mask = convert.feather(mask[None])[0] * convert.border_fade(32)
    warped = align.warp(pasted_mask, align.invert(a), 64, 64, "zero")[..., 0]
    region = (np.maximum(frame.mask[..., 0], truth.mask[..., 0]) > 0.5) & (warped > 0.99)
    assert region.mean() > 0.06  # 0.087 to 0.131 of the frame measured
    paste = lambda t: convert.into_frames(frame.image[None], decoded[None], mask[None], t[None])[0]
    got = paste(a)
    err = np.abs(got - truth.image)[region].mean()
    assert err < 0.016, (k, err)  # 0.008 to 0.013 measured (resampling, most of it at the eyes and mouth)
    off = a.copy()
    off[0, 2] += 2.0  # the crop two pixels to the side
    assert np.abs(paste(off) - truth.image)[region].mean() > 3 * err, k
    # Outside the warped mask (feathered, and faded at the crop's edges), the frame's own pixels
    # (with no tone carried; carry_tone's reach is tested below).
    plain = convert.into_frames(frame.image[None], decoded[None], mask[None], a[None], tone=False)[0]
    np.testing.assert_array_equal(plain[warped == 0], frame.image.astype(np.float32)[warped == 0])
    np.testing.assert_allclose(plain[warped > 0.99], got[warped > 0.99], atol=2e-3)  # the swap where pasted
    # A photo (uint8) takes the same path to the same pixels, to its rounding; a few pixels more
    # where the rounding moves a step between neighbours across carry_tone's TONE_EDGE (4 of
    # 4,096 pixels in one of these frames, by 0.02).
    u8 = convert.into_frames(render.to_uint8(frame.image)[None], decoded[None], mask[None], a[None])[0]
    d = np.abs(u8 / 255.0 - got).max(-1)
    assert u8.dtype == np.uint8 and (d > 2 / 255 + 1e-6).mean() < 0.002 and d.max() < 0.04, (k, d.max())


def _true_swaps(n: int = 6, families: tuple[int, ...] = (0, 1)):
  """(frame, true face swap, decoded crop = the truth's, crop mask, transform) for n held-out
  faces each way between identities 0 and 1 of the families (family 1's differ in tone)."""
  from encdec_jax.data import synthetic
  for seed in families:
    for p, q in ((0, 1), (1, 0)):
      ti, tj = render.identity_traits(seed, p), render.identity_traits(seed, q)
      for k in range(n):
        f = synthetic.example_factors(seed, "test", p, k)
        a = synthetic.transform(ti, f, 32, 64, "whole_face")
        view = render.crop_view(64, a)
        yield (render.render(ti, f, 64), render.render(ti, f, 64, face=tj),
               render.render(ti, f, 32, face=tj, view=view).image, render.render(ti, f, 32, view=view).mask[..., :1], a)


def test_the_frames_skin_round_the_paste_takes_the_swaps_tone():
  """A perfect decoder's swaps pasted back: outside the crop's inscribed circle the frame's own
  face stays, a ring of the other identity's skin. carry_tone gives that skin the swap's tone,
  as the true face swap has it: on the faces (frame's or truth's), the error to the truth falls
  from 0.082 to 0.023 (measured, 48 swaps), and elsewhere (hair, ears, neck, background) it stays
  small (0.0033 measured, 0.0047 before the skin had to join the face; 0.0014 without,
  resampling). A decoder that gives the frame's own crop back carries no tone: the frame outside
  the paste is untouched."""
  from encdec_jax import align
  errs = []
  for frame, truth, decoded, mask, a in _true_swaps():
    face = np.maximum(frame.mask[..., 0], truth.mask[..., 0]) > 0.5
    for tone in (False, True):
      got = convert.into_frames(frame.image[None], decoded[None], mask[None], a[None], tone=tone)[0]
      d = np.abs(got - truth.image)
      errs.append((d[face].mean(), d[~face].mean()))
    own = align.crop(frame.image.astype(np.float32), a, 32)
    weight = convert.feather(mask[None])[0] * convert.border_fade(32)
    np.testing.assert_array_equal(convert.carry_tone(frame.image, own, weight, a), frame.image.astype(np.float32))
  e = np.asarray(errs).reshape(-1, 2, 2).mean(0)  # [tone][face, elsewhere]
  assert e[0, 0] > 0.07 and e[1, 0] < 0.035 and e[1, 0] < 0.4 * e[0, 0], e
  assert e[0, 1] < 0.002 and e[1, 1] < 0.004, e


def test_a_background_of_the_skins_colour_keeps_its_own():
  """Families 2 and 8 frame their heads against a background of about the skin's chromaticity,
  which carry_tone's key alone gave the swap's tone: a halo round the head (the worst image's
  error to the truth outside the faces 0.043). Only skin joined to the face, with no step at
  the head's outline between them, takes it now (0.0053 measured), and the faces keep theirs."""
  errs = []
  for frame, truth, decoded, mask, a in _true_swaps(6, families=(2, 8)):
    face = np.maximum(frame.mask[..., 0], truth.mask[..., 0]) > 0.5
    for tone in (False, True):
      d = np.abs(convert.into_frames(frame.image[None], decoded[None], mask[None], a[None], tone=tone)[0]
                 - truth.image)
      errs.append((d[face].mean(), d[~face].mean()))
  e = np.asarray(errs).reshape(-1, 2, 2)  # [image][tone][face, elsewhere]
  assert e[:, 1, 1].max() < 0.012, e[:, 1, 1].max()
  assert e[:, 1, 0].mean() < 0.4 * e[:, 0, 0].mean(), e.mean(0)


def test_carry_tone_reaches_the_forehead_and_cheeks_not_the_neck_or_far_pixels():
  """skin_window: the face ellipse grown above and to the sides, short of it below; in a large
  photo only a box round the face is computed, and a skin-coloured pixel outside it keeps its
  value."""
  from encdec_jax import align
  e = convert.face_ellipse("whole_face")
  a = np.array([[0.25, 0.0, -35.0], [0.0, 0.25, -35.0]])  # the crop: 128 frame pixels from (140, 140)
  (y0, y1, x0, x1), s = convert.skin_window((400, 400), a, 32, "whole_face")
  assert 0 < y0 and y1 < 400 and 0 < x0 and x1 < 400 and (y1 - y0) * (x1 - x0) < 0.5 * 400 * 400
  ys, xs = np.mgrid[y0:y1, x0:x1]
  u, v = (xs / 4.0 - 35 + 0.5) / 32, (ys / 4.0 - 35 + 0.5) / 32  # crop fractions
  crown = np.argmin(np.abs(u - e["cx"]) + np.abs(v - (e["cy"] - 1.8 * e["ry"])))
  cheek_out = np.argmin(np.abs(u - (e["cx"] + 1.8 * e["rx"])) + np.abs(v - e["cy"]))
  assert s.ravel()[crown] == 1.0 and s.ravel()[cheek_out] == 1.0
  # Below the centre it ends about the ellipse's lowest point (the jaw, not the neck): full at
  # 0.85 of the half-height, 0 past 1.05 of it.
  centre = np.argmin(np.abs(u[0] - e["cx"]))
  assert s[np.argmin(np.abs(v[:, 0] - (e["cy"] + 0.85 * e["ry"]))), centre] == 1.0
  assert np.all(s[v[:, 0] > e["cy"] + 1.05 * e["ry"], centre] == 0.0)
  frame = np.full((400, 400, 3), 0.3, np.float32)  # all of it skin-coloured
  face = np.full((32, 32, 3), 0.6, np.float32)
  w = np.ones((32, 32, 1), np.float32)
  got = convert.carry_tone(frame, face, w, a, "whole_face")
  assert got[y0 + s.shape[0] // 2 - 20, x0 + s.shape[1] // 2] == pytest.approx([0.6] * 3, abs=1e-5)
  outside = np.ones((400, 400), bool)
  outside[y0:y1, x0:x1] = False
  np.testing.assert_array_equal(got[outside], frame[outside])


def test_a_photo_converts_only_the_box_the_paste_reaches_to_the_same_pixels():
  """A uint8 frame (a photo) is made float only in the box that carry_tone and the paste can
  reach; every pixel, in it and out of it, is what the float path gives, rounded (at most one
  level apart where a rounding sits on .5: the box's coordinates differ by float eps). Faces in
  the middle, at a corner (the box clipped by the frame), rotated, and larger than the crop (the
  crop's Lanczos shrink of its own region)."""
  from encdec_jax.data import render
  from encdec_jax.pixels import to_unit_float
  rng = np.random.default_rng(11)
  frame = render.to_uint8(render.render(render.identity_traits(0, 1), render.sample_factors(rng), 64).image)
  photo = np.asarray(Image.fromarray(frame).resize((400, 300), Image.Resampling.BILINEAR))
  photo = np.ascontiguousarray(np.clip(photo.astype(np.int16) + rng.integers(-8, 9, photo.shape), 0, 255).astype(np.uint8))
  face = rng.uniform(0.2, 0.9, (32, 32, 3)).astype(np.float32)
  mask = np.ones((32, 32, 1), np.float32)
  c, r = np.cos(0.3), np.sin(0.3)
  for a in (np.array([[0.25, 0.0, -35.0], [0.0, 0.25, -20.0]]),   # 128 px face in the middle
            np.array([[0.25, 0.0, -1.0], [0.0, 0.25, 2.0]]),      # at the top-left corner
            np.array([[0.3 * c, 0.3 * r, -60.0], [-0.3 * r, 0.3 * c, -10.0]]),  # rotated
            np.array([[1.5, 0.0, -300.0], [0.0, 1.5, -200.0]])):  # smaller than the crop
    got = convert.into_frames(photo[None], face[None], mask[None], a[None], face_type="whole_face")[0]
    ref = convert.into_frames(to_unit_float(photo)[None], face[None], mask[None], a[None], face_type="whole_face")[0]
    ref = np.clip(np.round(ref * 255), 0, 255).astype(np.uint8)
    assert got.dtype == np.uint8 and got.shape == photo.shape
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (a, diff.max(), (diff > 0).mean())
    assert (got != photo).any()  # the face was pasted


def test_border_fade_leaves_no_square_in_the_frame():
  """The pasted mask is 0 outside the circle inscribed in the crop (its corners and edges), 1
  inside BORDER of that circle, and rises with the distance inside it: a face that runs past the
  crop fades into the frame in a rounded outline instead of ending in the crop's square."""
  f = convert.border_fade(32)[..., 0]
  assert f.shape == (32, 32)
  assert f[0].max() < 0.1 and f[-1].max() < 0.1 and f[:, 0].max() < 0.1 and f[:, -1].max() < 0.1
  t = (np.arange(32) + 0.5) / 32 - 0.5
  radius = np.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
  assert np.all(f[radius >= 0.5] == 0) and np.all(f[radius <= 0.5 - convert.BORDER] == 1)
  order = np.argsort(radius.ravel())
  assert np.all(np.diff(f.ravel()[order]) <= 1e-6)  # never rises going outwards
  # A square fade would keep the corners' diagonal at the level of the edges' middles: this one
  # is lower along the diagonal than along the axis at the same distance from the edge.
  assert f[3, 3] < 0.5 * f[3, 16]
