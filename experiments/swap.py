"""Swap aligned face crops into an identity of a trained run.

  python -m experiments.swap --workdir=runs/small --to=1 --input=crops/ --output=swapped/
      [--noblend] [--mark] [--step=N]

Each readable image of --input (png, jpg, ...; converted and resized as the image-folder data
is: encdec_jax/data/folders.py) is encoded and decoded as identity --to (its index, or its folder
name for runs on image folders), by default blended into the input crop inside the face mask (the
learned mask if the model has one, else a soft centred ellipse), and written as PNG to --output
with provenance metadata (synthetic, made by encdec_jax, run, checkpoint step, source file);
--mark adds a visible corner mark. Unreadable files are listed and skipped.
"""
import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a trained run's workdir", required=True)
_TO = flags.DEFINE_string("to", None, "target identity: index or folder name", required=True)
_INPUT = flags.DEFINE_string("input", None, "folder of aligned face crops", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "where swapped PNGs go", required=True)
_BLEND = flags.DEFINE_bool("blend", True, "blend into the input inside the face mask")
_MARK = flags.DEFINE_bool("mark", False, "add a visible corner mark")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")


def main(argv):
  del argv
  from encdec_jax import hostmem
  hostmem.tune_malloc()  # XLA:CPU step buffers stay in the heap (encdec_jax/hostmem.py)
  logging.set_verbosity(logging.ERROR)
  import numpy as np
  from tqdm.auto import tqdm
  from encdec_jax import images, inference
  from encdec_jax.data import folders
  if not os.path.isdir(_INPUT.value):
    sys.exit(f"error: --input={_INPUT.value!r} is not a directory")
  src, dst = os.path.realpath(_INPUT.value), os.path.realpath(_OUTPUT.value)
  if dst == src or dst.startswith(src + os.sep):
    sys.exit(f"error: --output={_OUTPUT.value!r} is {'the input folder' if dst == src else 'inside --input'}: "
             "swaps would replace or mix with the originals; choose a folder outside it")
  try:
    run = inference.load_run(_WORKDIR.value, _STEP.value)
    to = inference.resolve_identity(run, _TO.value)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  r = run.cfg.data.resolution
  names = sorted(n for n in os.listdir(_INPUT.value) if n.lower().endswith(folders.IMAGE_EXTENSIONS))
  outputs = output_names(names)
  written, skipped = 0, []
  for name in tqdm(names, desc=f"swap into {run.identities[to]}", unit="img"):
    shown = folders.printable(name)
    path = os.path.join(_INPUT.value, name)
    if not os.path.isfile(path):  # a folder, FIFO or device named like an image: never opened
      skipped.append(f"{shown}: not a regular file")
      continue
    try:
      x, _ = folders.load_image(path, r, max(8, r // 4))
    except ValueError as e:
      skipped.append(f"{shown}: {e}")
      continue
    out, _ = inference.swap(run, x[None].astype(np.float32) / 255.0, to, blend=_BLEND.value)
    u8 = np.round(np.clip(out[0], 0, 1) * 255).astype(np.uint8)
    if _MARK.value:
      u8 = inference.corner_mark(u8)
    images.save_png(os.path.join(_OUTPUT.value, outputs[name]), u8, extra={
        "run": os.path.abspath(_WORKDIR.value), "step": run.step, "identity": run.identities[to],
        "source": shown, "blended": _BLEND.value})
    written += 1
  print(f"{written} swapped images in {_OUTPUT.value}" + (f"; skipped {len(skipped)}:" if skipped else ""))
  for s in skipped:
    print("  " + s)


def output_names(names: list[str]) -> dict[str, str]:
  """Each input's PNG name: its stem + .png, or its whole name + .png where stems collide
  (x.png and x.jpg -> x.png.png and x.jpg.png), so no output replaces another."""
  stems: dict[str, int] = {}
  for n in names:
    stem = os.path.splitext(n)[0].lower()
    stems[stem] = stems.get(stem, 0) + 1
  return {n: (os.path.splitext(n)[0] if stems[os.path.splitext(n)[0].lower()] == 1 else n) + ".png"
          for n in names}


if __name__ == "__main__":
  from experiments._cli import parse_flags
  app.run(main, flags_parser=parse_flags)
