"""Judges of swap quality: an identity classifier and a pose/expression regressor.

Papers judge a face swap by identity retrieval (is the swap recognised as the target?), pose and
expression error (did the source's survive?) and reconstruction. These are the analogues, fitted
by the project on the dataset's own training images (never on swaps), each also as a softened
copy and both with pixel noise (`training_copies`) so the autoencoders' softer, slightly noisy
outputs are judged fairly, and cached per dataset (judge_cache: Orbax, under the TFDS data dir).
Their scores on held-out renderings are printed and returned so nobody trusts a broken judge.

Both see the **face region only** (`face_only`: the image times its frame's visible-face mask;
hair and background are zeroed), so hair cannot decide identity: a face swap keeps the frame's
hair. On synthetic data they are also fitted on face swaps of the training images, labelled with
the face's identity and masked by the frame's mask, so neither the hair nor the outline of the
head (both the frame's) can tell them who it is. Half of those swaps have the true face swap's
layout and half the layout of j's own crops (what a per-identity decoder draws: its features a
pixel or so away), and the noisy copies read their patches at landmarks jittered by JITTER px, so
the regressor reads pose and expression in either layout, not the layout itself (BENCHMARKS.md,
"Judges": a perfect per-identity decoder read 0.64 / 0.68 `expr_mae` on the judges before them).

  classifier: ridge readout of fixed seeded random conv features -> identity (N). Not landmark
              patches: at the true face swap's landmarks they would read the identity from
              where the features should be.
  regressor:  ridge readout of pixels sampled in patches at the eye, nose and mouth landmarks ->
              the 7 pose and expression factors (render.POSE_EXPRESSION), standardised by the
              training set's mean and std; only for data that stores factors (synthetic). The
              patches let it read smiles, blinks and brows, which global features do not.
  locator:    ridge readout of the same patches -> each landmark's move to where the face's
              feature is (encdec_jax/patches.py), applied before the regressor reads: a swap is
              read where its features are, not where the true swap has them; a per-identity
              decoder draws them in the target's own layout, up to 1.5 px away.
Where the data has frames (synthetic faces), the judges read what a user sees: the aligned crop
of the frame (`judged_view`: align.crop by the example's transform), so a swap is judged after it
was pasted back into its frame, and the judges are fitted and scored on crops cut the same way.
Per factor, the regressor's held-out error (`attr_floors`) is compared with guessing the mean
(`attr_guess`); a factor is *readable* when its floor is at most half its guess, and `attr_mae`
averages the readable factors only (which ones is reported).
Evaluation reads with a `Panel`: three judges fitted alike with seeds 0, 1 and 2 (PANEL), whose
readings are averaged, so a verdict does not hang on one judge's random features and noise draws.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax import bootstrap
from encdec_jax.data import render as R
from encdec_jax.patches import LOCATE_SD, fit_locator, locate, patch_features
from encdec_jax.pixels import to_unit_float
from encdec_jax.ridge import ridge_cv

N_ATTR = len(R.POSE_EXPRESSION)
FEATURES = 128     # random 3x3 conv filters of the identity features
NOISE = 0.03       # sd of the pixel noise on the judges' noisy training copies (see train_judges)
READABLE = 0.5     # a factor is scored if its floor is <= this x guessing the mean


def is_readable(floor, guess):
  """Whether the judge reads a factor well enough to score it (works on arrays too)."""
  return floor <= READABLE * guess

VERSION = 11       # of the judges' form: caches of another version are refitted, never misread
                   # (what each version changed: BENCHMARKS.md, "Judges")
PANEL = (0, 1, 2)  # the seeds of the judges read as one (Panel)
JITTER = 0.5       # sd, in pixels, of the landmarks of the noisy training copies (train_judges)


def scored_factors(readable) -> dict[str, np.ndarray]:
  """{'attr_mae': the readable factors, 'expr_mae': the readable expression factors, 'pose_mae':
  the readable pose factors} as (7,) bool masks over render.POSE_EXPRESSION, those with any."""
  names = np.array(R.POSE_EXPRESSION)
  out = {"attr_mae": np.asarray(readable, bool),
         "expr_mae": readable & np.isin(names, R.EXPRESSION),
         "pose_mae": readable & np.isin(names, R.POSE)}
  return {k: v for k, v in out.items() if v.any()}


def face_only(x_BxHxWx3, mask_BxHxWxC) -> np.ndarray:
  """The image with everything but the visible face (mask channel 0) zeroed."""
  m = to_unit_float(mask_BxHxWxC)
  return np.asarray(x_BxHxWx3, np.float32) * m[..., :1]


def features(p: dict, x_BxHxWx3) -> jax.Array:
  """Fixed random features: a seeded 3x3 conv bank, ReLU, 4x4 average pooling grid, standardised
  with the training set's statistics."""
  x = jnp.asarray(x_BxHxWx3, jnp.float32)
  h = jax.nn.relu(jax.lax.conv_general_dilated(x, p["filters"], (1, 1), "SAME",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC")))
  b, hh, ww, c = h.shape
  h = h.reshape(b, 4, hh // 4, 4, ww // 4, c).mean((2, 4)).reshape(b, -1)
  return (h - p["mu"]) / p["sd"]


_features = jax.jit(features)


def judged_view(d: dict, resolution: int | None = None) -> dict:
  """Arrays as the judges see them: where there are frames, `image` is the aligned crop of each
  frame (align.crop by its transform; float32), else the arrays as they are."""
  if "frame" not in d:
    return d
  from encdec_jax import align
  r = resolution or d["image"].shape[1]
  return {**d, "image": align.crops(d["frame"], d["transform"], r)}


class _Scored:
  """What a fitted judge (`Judges`) and a `Panel` of them share: scores on held-out real images."""
  attr_floors: np.ndarray | None
  attr_guess: np.ndarray | None

  @property
  def readable(self) -> np.ndarray | None:
    """(7,) bool: the factors attr_mae scores (floor <= READABLE x guessing the mean)."""
    return None if self.attr_floors is None else is_readable(self.attr_floors, self.attr_guess)

  @property
  def attr_floor(self) -> float | None:
    """The regressor's own error on real images, over the readable factors."""
    return None if self.attr_floors is None else float(self.attr_floors[self.readable].mean())

  @property
  def attr_guess_mean(self) -> float | None:
    return None if self.attr_guess is None else float(self.attr_guess[self.readable].mean())

  def identify(self, x_BxHxWx3, mask_BxHxWxC) -> np.ndarray:
    """Identity of the face inside the mask."""
    return self.identity_scores(x_BxHxWx3, mask_BxHxWxC).argmax(-1)


@dataclasses.dataclass
class Judges(_Scored):
  """One fitted judge of each kind (train_judges, with one seed)."""
  feats: dict                   # filters, mu, sd of the conv features
  classifier: np.ndarray        # (F, N) ridge readout on one-hot identities
  regressor: np.ndarray | None  # (P, 7) ridge readout of standardised patch features; None without factors
  num_identities: int
  attr_mean: np.ndarray | None  # factor statistics of the training set
  attr_std: np.ndarray | None
  accuracy: float               # classifier on held-out real images
  attr_floors: np.ndarray | None  # (7,) regressor MAE per factor (standardised) on held-out real images
  attr_guess: np.ndarray | None   # (7,) what guessing the training mean scores there
  patch_stats: dict | None = None  # mu, sd of the patch features
  attr_range: np.ndarray | None = None  # (2, 7) standardised min and max of the training factors
  patch_scale: float = 1.0      # the face type's zoom (align.FACE_TYPES): patches cover the same face
  locator: dict | None = None   # w (P, 8), mu, sd: each landmark's move (px) to its feature (locate)
  locate_px: float | None = None  # locate's mean error on held-out real images, started LOCATE_SD px off

  panel_size = 1  # one judge of each kind

  def _patches(self, x_face, landmarks):
    return (patch_features(x_face, landmarks, self.patch_scale) - self.patch_stats["mu"]) / self.patch_stats["sd"]

  def identity_scores(self, x_BxHxWx3, mask_BxHxWxC) -> np.ndarray:
    """(B, N) the classifier's readout of the face inside the mask (its argmax: `identify`)."""
    x = face_only(x_BxHxWx3, mask_BxHxWxC)
    return _batched(lambda b: _features(self.feats, b), x) @ self.classifier

  def locate(self, x_face, landmarks_Bx4x2) -> np.ndarray:
    """The landmarks moved to where this face's eyes, nose and mouth are (`x_face`: face_only's;
    patches.locate); as given where the judges have no locator (no factors)."""
    return locate(self.locator, x_face, landmarks_Bx4x2, self.patch_scale)

  def attributes(self, x_BxHxWx3, mask_BxHxWxC, landmarks_Bx4x2) -> np.ndarray:
    """Standardised pose/expression estimates (B, 7) of the face whose features are near
    `landmarks` (found there by `locate`), clipped to the range the factors take (a linear readout
    of a blurred or empty face would extrapolate past any real face)."""
    x = face_only(x_BxHxWx3, mask_BxHxWxC)
    est = self._patches(x, self.locate(x, landmarks_Bx4x2)) @ self.regressor
    return est if self.attr_range is None else np.clip(est, self.attr_range[0], self.attr_range[1])


@dataclasses.dataclass
class Panel(_Scored):
  """Judges fitted alike with different seeds (PANEL), read as one: the identity by their summed
  classifier scores, pose and expression as the mean of their readings, each member reading where
  its own locator finds the features. A judge's seed draws its random features and the noise of
  its training copies; alone, it moved family 1's smile reading by 0.02 between seeds, as much
  as a setting's distance from its bar (BENCHMARKS.md, "Judges"). The panel's own scores on held-out
  real images (accuracy, floors, locate_px) are measured as one judge's are (`score`)."""
  members: tuple[Judges, ...]
  accuracy: float = 0.0
  attr_floors: np.ndarray | None = None
  attr_guess: np.ndarray | None = None
  locate_px: float | None = None

  def __post_init__(self):
    if not self.members:
      raise ValueError("a panel of judges needs at least one member")

  @property
  def panel_size(self) -> int:
    return len(self.members)

  # What the members share: the training set's factor statistics and the face type.
  num_identities = property(lambda self: self.members[0].num_identities)
  attr_mean = property(lambda self: self.members[0].attr_mean)
  attr_std = property(lambda self: self.members[0].attr_std)
  attr_range = property(lambda self: self.members[0].attr_range)
  regressor = property(lambda self: self.members[0].regressor)  # None: no factors to read
  patch_scale = property(lambda self: self.members[0].patch_scale)

  def identity_scores(self, x_BxHxWx3, mask_BxHxWxC) -> np.ndarray:
    return sum(m.identity_scores(x_BxHxWx3, mask_BxHxWxC) for m in self.members)

  def locate(self, x_face, landmarks_Bx4x2) -> np.ndarray:
    return np.mean([m.locate(x_face, landmarks_Bx4x2) for m in self.members], 0)

  def attributes(self, x_BxHxWx3, mask_BxHxWxC, landmarks_Bx4x2) -> np.ndarray:
    return np.mean([m.attributes(x_BxHxWx3, mask_BxHxWxC, landmarks_Bx4x2) for m in self.members], 0)


def _local(x):
  """On this process's first device: the judges never take part in cross-process programs
  (in a multi-host run every process fits or loads its own copy)."""
  return jax.device_put(x, jax.local_devices()[0])


def _batched(fn, x, batch=256):
  x = np.asarray(x, np.float32)
  return np.concatenate([np.asarray(fn(_local(x[k:k + batch]))) for k in range(0, len(x), batch)])


def _soften(x):
  """Downsampled 2x and back (bilinear): the softness of a decoder's output."""
  b, h, w, c = x.shape
  return np.asarray(jax.image.resize(jax.image.resize(x, (b, h // 2, w // 2, c), "linear"),
                                     (b, h, w, c), "linear"))


def training_copies(x, seed: int = 0) -> list:
  """The copies of the training images both judges are fitted on: each image as rendered,
  softened (a decoder's softness), and both again with Gaussian pixel noise of sd NOISE (a
  decoder's small errors), so invisible noise on a face does not read as a change of expression
  (BENCHMARKS.md, "Judges")."""
  rng = np.random.default_rng(seed)
  soft = _soften(x)
  noisy = lambda a: np.clip(a + rng.normal(0.0, NOISE, a.shape).astype(np.float32), 0.0, 1.0)
  return [x, soft, noisy(x), noisy(soft)]


def face_masks(d: dict) -> np.ndarray:
  """The face masks of a split: stored ones, else the soft face ellipse (image folders)."""
  if "mask" in d:
    return d["mask"]
  from encdec_jax.convert import soft_ellipse
  r = d["image"].shape[1]
  return np.broadcast_to(soft_ellipse(r), (len(d["image"]), r, r, 1))


def train_judges(train: dict, test: dict, num_identities: int, seed: int = 0,
                 extra: dict | None = None, patch_scale: float = 1.0) -> Judges:
  """Fits both judges on `train` (arrays with image, identity[, mask, factors, landmarks]) plus
  `extra` (more such arrays: face swaps of the training images, labelled with the face's
  identity), each image in its `training_copies` (rendered, softened, both noisy), face region
  only, and scores them on `test`'s
  real images. The readouts are closed-form ridge regressions: nothing trains for steps.
  `patch_scale`: the crops' zoom (align.FACE_TYPES). Where the arrays have frames, the judges read
  their crops (judged_view)."""
  train, test = judged_view(train), judged_view(test)
  if extra is not None:  # images as floats in [0, 1] on both sides (judged views are floats)
    unit = lambda d: {**d, "image": to_unit_float(d["image"])}
    train, extra = unit(train), unit(extra)
    train = {k: np.concatenate([train[k], extra[k]]) for k in train if k in extra}
  r = train["image"].shape[1]
  if r % 8:
    raise ValueError(f"judges need a resolution divisible by 8; got {r}")
  x = to_unit_float(train["image"])
  m = face_masks(train)
  copies = training_copies(x, seed)
  k = len(copies)
  x = np.concatenate([face_only(c, m) for c in copies])
  filters = np.asarray(jax.random.normal(jax.random.key(seed), (3, 3, 3, FEATURES)) * 0.3)
  raw = {"filters": filters, "mu": np.zeros(FEATURES * 16, np.float32), "sd": np.ones(FEATURES * 16, np.float32)}
  f = _batched(lambda b: _features(raw, b), x).astype(np.float64)
  p = {"filters": filters, "mu": f.mean(0).astype(np.float32), "sd": (f.std(0) + 1e-6).astype(np.float32)}
  f = (f - f.mean(0)) / (f.std(0) + 1e-6)
  ids = np.concatenate([train["identity"]] * k)
  j = Judges(p, ridge_cv(f, np.eye(num_identities)[ids], k), None, num_identities, None, None, 0.0,
             None, None, patch_scale=float(patch_scale))
  if "factors" in train and "landmarks" in train:
    lm = np.concatenate([train["landmarks"]] * k).astype(np.float32)
    j.locator = fit_locator(x, lm, j.patch_scale, k, seed)
    # The noisy copies (training_copies' last two) read their patches at landmarks moved by
    # JITTER px (since VERSION 8; kept with the locator, which finds a face's features to about
    # 0.15 px, not exactly: BENCHMARKS.md, "Judges").
    rng = np.random.default_rng(seed + 1)
    moved = np.repeat(np.arange(k) >= k - 2, len(train["landmarks"]))[:, None, None]
    lm = np.where(moved, lm + rng.normal(0.0, JITTER / r, lm.shape), lm).astype(np.float32)
    pf = patch_features(x, lm, j.patch_scale).astype(np.float64)
    j.patch_stats = {"mu": pf.mean(0).astype(np.float32), "sd": (pf.std(0) + 1e-6).astype(np.float32)}
    pf = (pf - j.patch_stats["mu"]) / j.patch_stats["sd"]
    fa = train["factors"][:, :N_ATTR].astype(np.float64)
    j.attr_mean, j.attr_std = fa.mean(0).astype(np.float32), (fa.std(0) + 1e-6).astype(np.float32)
    z = (fa - j.attr_mean) / j.attr_std
    j.regressor = ridge_cv(pf, np.concatenate([z] * k), k)
    j.attr_range = np.stack([z.min(0), z.max(0)]).astype(np.float32)
  return score(j, test, seed)


def score(j, test: dict, seed: int = 0):
  """`j` (Judges or a Panel) with its own scores on `test`'s real images (its judged view):
  identity accuracy, and where it reads factors, each factor's error (`attr_floors`) against
  guessing the training mean (`attr_guess`), and how close `locate` gets started LOCATE_SD px off
  (`locate_px`, that noise drawn with seed + 3)."""
  xt, m = to_unit_float(test["image"]), face_masks(test)
  j.accuracy = float((j.identify(xt, m) == test["identity"]).mean())
  if j.regressor is not None:
    r = xt.shape[1]
    truth = (test["factors"][:, :N_ATTR] - j.attr_mean) / j.attr_std
    est = j.attributes(xt, m, test["landmarks"])
    xf, lt = face_only(xt, m), np.asarray(test["landmarks"], np.float32)
    start = lt + np.random.default_rng(seed + 3).normal(0.0, LOCATE_SD / r, lt.shape).astype(np.float32)
    j.locate_px = float(np.abs(j.locate(xf, start) - lt).mean() * r)
    j.attr_floors = np.abs(est - truth).mean(0).astype(np.float32)
    j.attr_guess = np.abs(truth).mean(0).astype(np.float32)
  return j


def train_panel(train: dict, test: dict, num_identities: int, seeds=None, extra: dict | None = None,
                patch_scale: float = 1.0) -> Panel:
  """A Panel of train_judges fitted alike, one per seed (default PANEL), scored as one."""
  members = tuple(train_judges(train, test, num_identities, seed=s, extra=extra, patch_scale=patch_scale)
                  for s in (PANEL if seeds is None else seeds))
  return score(Panel(members), judged_view(test))


def describe(j: Judges | Panel) -> str:
  """One line: identity accuracy, and per factor the floor against guessing the mean; for a panel,
  also its members' floors."""
  out = f"identity accuracy {100 * j.accuracy:.1f}% on held-out real images (face region only)"
  if isinstance(j, Panel):
    floors = [m.attr_floor for m in j.members if m.attr_floor is not None]
    out = f"a panel of {len(j.members)} read as one: " + out
    if floors:
      out += f"; its members' floors {min(floors):.3f}-{max(floors):.3f}"
  if j.attr_floors is not None:
    parts = [f"{n} {f:.2f}/{g:.2f}" + ("" if ok else " (not scored)") for n, f, g, ok in
             zip(R.POSE_EXPRESSION, j.attr_floors, j.attr_guess, j.readable)]
    out += (f"; pose/expression floor {j.attr_floor:.3f} std units (guessing the mean "
            f"{j.attr_guess_mean:.3f}); per factor floor/guess: " + ", ".join(parts))
  if j.locate_px is not None:
    out += (f"; features located to {j.locate_px:.2f} px on held-out real images started "
            f"{LOCATE_SD:g} px (sd) off")
  return out


def swap_samples(j: Judges | Panel, swaps_BxHxWx3: np.ndarray, masks_BxHxWxC: np.ndarray,
                 landmarks_Bx4x2: np.ndarray | None, source_identity: int, target_identity: int,
                 source_factors: np.ndarray | None) -> dict[str, np.ndarray]:
  """Per image (arrays of B), for (converted) swaps of one source identity into one target,
  judged inside `masks` (where the face should be) at `landmarks` (where its eyes, nose and mouth
  should be): recognised as the target (`id_transfer`, 0 or 1), as the source (`id_leak`), and the
  pose/expression error against the source's factors, per factor (`attr_err/<factor>`), over the
  readable ones (`attr_mae`), and over the readable expression (`expr_mae`) and pose (`pose_mae`)
  factors, where any is readable; and the signed error per factor (`attr_bias/<factor>`: the
  judge's reading minus the truth, > 0 where the swaps show more of the factor than the source)."""
  x = np.clip(np.asarray(swaps_BxHxWx3, np.float32), 0.0, 1.0)
  ids = j.identify(x, masks_BxHxWxC)
  out = {"id_transfer": (ids == target_identity).astype(np.float32),
         "id_leak": (ids == source_identity).astype(np.float32)}
  if j.regressor is not None and source_factors is not None and landmarks_Bx4x2 is not None:
    truth = (source_factors[:, :N_ATTR] - j.attr_mean) / j.attr_std
    signed = j.attributes(x, masks_BxHxWxC, landmarks_Bx4x2) - truth  # (B, 7)
    err = np.abs(signed)
    out.update({name: err[:, sel].mean(1) for name, sel in scored_factors(j.readable).items()})
    out.update({f"attr_err/{n}": err[:, k] for k, n in enumerate(R.POSE_EXPRESSION)})
    out.update({f"attr_bias/{n}": signed[:, k] for k, n in enumerate(R.POSE_EXPRESSION)})
  return out


def factor_rows(j: Judges | Panel, samples: dict[str, np.ndarray],
                source_factors: np.ndarray | None) -> dict[str, bootstrap.SetStatistic]:
  """`attr_corr/<factor>` of one direction as its images' rows (the source's factor, the judge's
  reading of the swap: the truth plus `swap_samples`' signed error), whose statistic is their
  correlation (`factor_correlations`); {} where the factors are not read."""
  if source_factors is None or "attr_bias/" + R.POSE_EXPRESSION[0] not in samples:
    return {}
  truth = (source_factors[:, :N_ATTR] - j.attr_mean) / j.attr_std
  return {f"attr_corr/{n}": bootstrap.SetStatistic(
              np.stack([truth[:, k], truth[:, k] + samples[f"attr_bias/{n}"]], -1), bootstrap.correlation)
          for k, n in enumerate(R.POSE_EXPRESSION)}


def factor_correlations(j: Judges | Panel, samples: dict[str, np.ndarray],
                        source_factors: np.ndarray | None) -> dict[str, float]:
  """`attr_corr/<factor>`: over the images of one direction, the correlation between the judge's
  reading of the swaps and the source's factor. 1: the swaps follow the source; 0: they ignore it
  (0 too where every reading is the same); below 0: they move the other way, which an error worse
  than guessing can hide."""
  return {k: v.value() for k, v in factor_rows(j, samples, source_factors).items()}


def swap_scores(j: Judges | Panel, swaps_BxHxWx3: np.ndarray, masks_BxHxWxC: np.ndarray,
                landmarks_Bx4x2: np.ndarray | None, source_identity: int, target_identity: int,
                source_factors: np.ndarray | None) -> dict[str, float]:
  """swap_samples averaged over the images: the shares and mean errors; and, where the factors
  are read, how the readings follow the source's (`factor_correlations`)."""
  samples = swap_samples(j, swaps_BxHxWx3, masks_BxHxWxC, landmarks_Bx4x2, source_identity,
                         target_identity, source_factors)
  return ({k: float(np.mean(v)) for k, v in samples.items()}
          | factor_correlations(j, samples, source_factors))
