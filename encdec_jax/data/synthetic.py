"""What the synthetic faces are, in pure numpy (no TensorFlow): their version, the name of a set
of settings, each example's factors, its frame and aligned crop, and face swaps of training
examples for the judges.

A synthetic example is what a face-swap pipeline makes of one photo: the *frame* (the head shot
with hair and background, at the frame resolution) and its *aligned crop* (data.resolution, the
face type's framing: encdec_jax/align.py), cut by the similarity transform that takes the
frame's landmarks to the template, as experiments.extract cuts a photo. The crop is rendered
through that transform (a sharper camera, not a resampling: tests/data_test.py checks it against
align.crop of a 4x frame). The model trains on crops; its swaps are pasted back into the frame
(encdec_jax/convert.py) and judged there.

encdec_jax/data/synthetic_faces.py stores them as a TFDS dataset; this module is what a machine
without TensorFlow (a typical JAX GPU container) needs to use an exported copy.
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import io
import itertools
import multiprocessing
import os
import re
import sys
import warnings

import numpy as np

from encdec_jax import align
from encdec_jax.data import render as R

# 3.0.0: frames and aligned crops (face types), true face swaps in the frame;
# 2.1.0: stored as array_record, read back with numpy and PIL (no TensorFlow), the same arrays;
# 2.0.0: true face swaps (+ masks, landmarks); masks are of the visible face (not under hair);
# brow colour is a face trait. A cache of another version lives in another folder: never misread.
VERSION = "3.0.0"
_SPLIT_IDS = {"train": 0, "test": 1}


def config_name(resolution, identities, seed, train_per_identity, test_per_identity,
                frame_resolution, face_type) -> str:
  return (f"r{resolution}_n{identities}_s{seed}_t{train_per_identity}_h{test_per_identity}"
          f"_f{frame_resolution}_{face_type}")


def example_factors(seed: int, split: str, identity: int, index: int) -> np.ndarray:
  """Factors of one example: a pure function of (seed, split, identity, index)."""
  return R.sample_factors(np.random.default_rng([seed, 104729, _SPLIT_IDS[split], identity, index]))


def default_data_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "encdec_jax", "tfds")


def landmarks_px(traits: R.Traits, factors: np.ndarray, frame_resolution: int) -> np.ndarray:
  """(4, 2) the face's landmarks in frame pixels (they do not depend on the resolution: a 4 px
  rendering gives them cheaply)."""
  return R.render(traits, factors, 4).landmarks * frame_resolution - 0.5


def transform(traits: R.Traits, factors: np.ndarray, resolution: int, frame_resolution: int,
              face_type: str) -> np.ndarray:
  """(2, 3) frame pixels -> crop pixels: the aligned crop of this face, as photos are aligned."""
  return align.align_transform(landmarks_px(traits, factors, frame_resolution), resolution, face_type)


def crop_landmarks(landmarks_frame_fractions, a_2x3, frame_resolution: int, resolution: int) -> np.ndarray:
  """Landmarks given in frame fractions, in the crop's fractions."""
  px = np.asarray(landmarks_frame_fractions, np.float64) * frame_resolution - 0.5
  return ((align.apply(a_2x3, px) + 0.5) / resolution).astype(np.float32)


def own_crop(traits: R.Traits, factors: np.ndarray, resolution: int, frame_resolution: int,
             face_type: str) -> R.Rendering:
  """The face's own aligned crop at these factors: its own frame, cut by its own landmarks, as
  the dataset makes its images."""
  a = transform(traits, factors, resolution, frame_resolution, face_type)
  return R.render(traits, factors, resolution, view=R.crop_view(frame_resolution, a))


def own_crops(seed: int, identity: int, factors_BxF: np.ndarray, resolution: int,
              frame_resolution: int, face_type: str) -> np.ndarray:
  """(B, S, S, 3) float32 in [0, 1]: identity `identity`'s own aligned crops at these factors
  (own_crop): the images its decoder trains on. For a source with these factors it is what a
  perfect decoder of that identity draws, the best a swap made with Deepfakes' decoders can be.
  The true face swap (the identity's face in the source's frame) is not: its features sit where
  the other identity's face puts them in the source's crop, about a pixel away at 32 px
  (BENCHMARKS.md, "Judges")."""
  traits = R.identity_traits(seed, identity)
  out = [own_crop(traits, f, resolution, frame_resolution, face_type).image
         for f in np.asarray(factors_BxF, np.float64)]
  return np.asarray(out, np.float32).reshape((len(out), resolution, resolution, 3))


def split_frames(train: dict, s: dict) -> np.ndarray | None:
  """The frames of `train` where it is the whole training split of the synthetic_faces settings
  `s` (loading.synthetic_settings), identity-major: what training_face_swaps may take instead of
  rendering them again. None otherwise (a subset, another order, no frames)."""
  n, per = s["identities"], s["train_per_identity"]
  if "frame" not in train or "index" not in train or len(train["identity"]) != n * per:
    return None
  ordered = (np.array_equal(train["identity"], np.repeat(np.arange(n), per))
             and np.array_equal(train["index"], np.tile(np.arange(per), n)))
  return train["frame"] if ordered else None


def training_face_swaps(seed: int, identities: int, resolution: int, train_per_identity: int,
                        frame_resolution: int, face_type: str, frames: np.ndarray | None = None,
                        workers: int | None = None) -> dict:
  """Every training example's frame with another identity's face (identity i's k-th example gets
  the face of the (k mod (N-1))-th other identity), labelled with that face's identity, as a
  convert makes it and as a swap is judged: a crop of that face pasted back into the example's
  frame (convert.into_frames, inside the example's own mask), then the aligned crop of that frame
  (align.crop). The face's crop is, for even k, the true face swap's (j's face rendered in the
  example's crop: its features where j's face puts them in i's frame) and, for odd k, j's own
  aligned crop at the example's factors (own_crops: what a perfect decoder j draws, its features
  where j's own crops have them, a pixel or so away). Arrays image, mask, landmarks (uint8 /
  float32; crop), identity, factors. `mask` is the example's own crop mask, as when a swap is
  judged inside its source's mask; `landmarks` are the face's, where its features are. Fitted on
  together with the real training images, the judges cannot use the frame (head size, hairline,
  hair, the mask's outline, the frame's face where the convert fades into it at the crop's
  inscribed circle) to tell identities apart or to read pose and expression: in the data alone
  frame and identity always go together; and they read pose and expression in either layout of
  a swapped face (BENCHMARKS.md, "Judges": a perfect per-identity decoder).

  `frames`: the training split's frames (uint8), identity-major as load_split orders them: the
  pixels this would render (the dataset rendered them the same way), so not rendered again.
  Rendered in `workers` processes (default render_workers), as `examples` renders."""
  if frames is not None and frames.shape != (identities * train_per_identity, frame_resolution,
                                             frame_resolution, 3):
    raise ValueError(f"frames: shape {frames.shape}, expected ({identities * train_per_identity}, "
                     f"{frame_resolution}, {frame_resolution}, 3) (the training split, identity-major)")
  items = [(i, k, None if frames is None else frames[i * train_per_identity + k])
           for i in range(identities) for k in range(train_per_identity)]
  n = render_workers(len(items)) if workers is None else workers
  rows = list(_in_blocks(_face_swaps, (seed, identities, resolution, frame_resolution, face_type), items, n))
  return {key: np.asarray([r[m] for r in rows]) for m, key in enumerate(_FACE_SWAP_KEYS)}


_FACE_SWAP_KEYS = ("image", "mask", "landmarks", "identity", "factors")


def _face_swaps(seed: int, identities: int, resolution: int, frame_resolution: int, face_type: str,
                items) -> list[tuple]:
  """training_face_swaps' values (_FACE_SWAP_KEYS) of each (i, k, frame or None)."""
  from encdec_jax import convert
  out = []
  for i, k, frame in items:
    others = [j for j in range(identities) if j != i]
    j = others[k % len(others)]
    ti, tj = _traits(seed, i), _traits(seed, j)
    f = example_factors(seed, "train", i, k)
    a = transform(ti, f, resolution, frame_resolution, face_type)
    view = R.crop_view(frame_resolution, a)
    face = (R.render(ti, f, resolution, face=tj, view=view) if k % 2 == 0
            else own_crop(tj, f, resolution, frame_resolution, face_type))
    own_mask = R.render(ti, f, resolution, view=view).mask
    if frame is None:
      frame = R.to_uint8(R.render(ti, f, frame_resolution).image)
    pasted = convert.into_frames(frame[None], face.image[None], own_mask[None, ..., :1], a[None],
                                 face_type=face_type)[0]
    out.append((align.crop(pasted, a, resolution), R.to_uint8(own_mask), face.landmarks, j,
                f.astype(np.float32)))
  return out


@functools.lru_cache(maxsize=64)
def _traits(seed: int, identity: int) -> R.Traits:
  return R.identity_traits(seed, identity)


def example(settings: tuple, split: str, identity: int, index: int) -> dict:
  """One example of the synthetic_faces dataset as it stores it (uint8 images; synthetic_faces.py
  names the fields): a pure function of the settings (seed, identities, resolution,
  frame_resolution, face_type), the split, the identity and the index."""
  seed, identities, resolution, fr, face_type = settings
  i, f = identity, example_factors(seed, split, identity, index)
  frame = R.render(_traits(seed, i), f, fr)
  a = align.align_transform(frame.landmarks * fr - 0.5, resolution, face_type)
  view = R.crop_view(fr, a)
  out = R.render(_traits(seed, i), f, resolution, view=view)
  swaps, faces = [], []
  if split == "test":
    swaps = [R.render(_traits(seed, j), f, resolution, view=view) if j != i else out
             for j in range(identities)]
    faces = [R.render(_traits(seed, i), f, fr, face=_traits(seed, j)) if j != i else frame
             for j in range(identities)]
  return {
      "image": R.to_uint8(out.image), "mask": R.to_uint8(out.mask), "identity": i, "index": index,
      "factors": f.astype(np.float32), "landmarks": out.landmarks,
      "frame": R.to_uint8(frame.image), "frame_mask": R.to_uint8(frame.mask),
      "frame_landmarks": frame.landmarks, "transform": a.astype(np.float32),
      "swaps": [R.to_uint8(s.image) for s in swaps],
      "face_swaps": [R.to_uint8(s.image) for s in faces],
      "face_swap_masks": [R.to_uint8(s.mask) for s in faces],
      "face_swap_landmarks": np.array(
          [crop_landmarks(s.landmarks, a, fr, resolution) for s in faces],
          np.float32).reshape(len(faces), len(align.LANDMARK_NAMES), 2),
  }


# The example's images, and its sequences of images (synthetic_faces.py declares them as such).
IMAGES = ("image", "mask", "frame", "frame_mask")
IMAGE_SEQUENCES = ("swaps", "face_swaps", "face_swap_masks")


def png(image_HxWxC: np.ndarray) -> bytes:
  """A uint8 image as PNG bytes (lossless: read back, the same array)."""
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(image_HxWxC).save(buf, format="PNG")
  return buf.getvalue()


def encoded(ex: dict) -> dict:
  """An example with its images as PNG bytes, as TFDS stores them: given bytes it writes them as
  they are, where given arrays it encodes each with TensorFlow, in the writing process (importing
  TensorFlow costs that process about 5 s)."""
  return {**ex, **{k: png(ex[k]) for k in IMAGES},
          **{k: [png(x) for x in ex[k]] for k in IMAGE_SEQUENCES}}


def _examples(settings: tuple, split: str, encode: bool, keys) -> list[dict]:
  out = [example(settings, split, i, k) for i, k in keys]
  return [encoded(ex) for ex in out] if encode else out


BLOCK = 16      # examples per task of a rendering process
MAX_WORKERS = 8


def render_workers(examples: int) -> int:
  """How many processes render `examples` examples: the cores this process may use (at most
  MAX_WORKERS), one below a few hundred examples (starting a process costs about a second)."""
  if examples < 256:
    return 1
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  return max(1, min(cores, MAX_WORKERS))


_GUARD = re.compile(r"""__name__\s*==\s*['"]__main__['"]""")


def unguarded_main() -> str | None:
  """The path of the main script where a spawned process would run all of it again: a script
  (`python file.py`, `python -m module`) whose source has no `if __name__ == "__main__":` guard.
  None where it would not (an interactive session or notebook, a guarded script)."""
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  path = getattr(spec, "origin", None) if spec is not None else getattr(main, "__file__", None)
  if not path or not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return None if _GUARD.search(f.read()) else path
  except OSError:
    return None


def examples(settings: tuple, split: str, per_identity: int, workers: int | None = None,
             encode: bool = False):
  """(key "i_k", example) for every identity i and index k of a split, in that order, with its
  images as PNG bytes where `encode` (`encoded`). Rendered (and encoded) in `workers` processes
  (default render_workers) while the caller writes: each example is a pure function of its key,
  so the examples are the same whoever renders them. At most 4 x workers blocks wait at a time.
  Processes are spawned, not forked (JAX's threads may hold locks in this one). A spawned
  process first runs the main script; one without an `if __name__ == "__main__":` guard would
  run all of it (here: wait forever on the dataset's cache lock that this process holds), so
  then, as where the processes cannot start, the examples are rendered here, with a warning."""
  keys = [(i, k) for i in range(settings[1]) for k in range(per_identity)]
  n = render_workers(len(keys)) if workers is None else workers
  for (i, k), ex in zip(keys, _in_blocks(_examples, (settings, split, encode), keys, n)):
    yield f"{i}_{k}", ex


def _in_blocks(fn, args: tuple, items: list, workers: int):
  """fn(*args, block) over consecutive blocks of BLOCK items, one result per item, yielded in
  order: computed in `workers` spawned processes while the caller consumes (at most 4 x workers
  blocks waiting), or here where workers is 1, the main script has no main guard
  (unguarded_main), or the processes cannot start (the rest then here, with a warning)."""
  done = 0
  script = unguarded_main() if workers > 1 else None
  if script:
    warnings.warn(f"synthetic faces: rendering in this process only: {script} has no `if __name__ == "
                  f"\"__main__\":` guard, and each rendering process would run it again", RuntimeWarning)
    workers = 1
  if workers > 1:
    try:
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        tasks = (pool.submit(fn, *args, items[b:b + BLOCK]) for b in range(0, len(items), BLOCK))
        pending = collections.deque(itertools.islice(tasks, 4 * workers))
        while pending:
          for out in pending.popleft().result():
            yield out
            done += 1
          pending.extend(itertools.islice(tasks, 1))
      return
    except concurrent.futures.process.BrokenProcessPool as e:
      warnings.warn(f"synthetic faces: rendering processes could not run ({e}); rendering the rest "
                    f"in this process", RuntimeWarning)
  for item in items[done:]:
    yield fn(*args, [item])[0]
