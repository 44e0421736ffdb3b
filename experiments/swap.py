"""Swap faces into an identity of a trained run: aligned crops, or whole photos.

  python -m experiments.swap --workdir=runs/small --to=1 --input=DIR --output=swapped/
      [--noblend] [--mark] [--step=N] [--input_kind=auto|crops|photos] [--largest]
      [--min_face=40] [--threshold=0.8]

Each readable image of --input (png, jpg, jpeg, webp, bmp) is written as PNG to --output:
- an aligned crop (converted and resized as the image-folder data is: encdec_jax/data/folders.py)
  is encoded, decoded as identity --to (its index, or its folder name for runs on image folders)
  and, by default, blended into the input inside the face mask (the learned mask if the model
  has one, else a soft ellipse over the face of an aligned crop);
- a photo goes through the face detector; every face (or the largest, --largest) at least
  --min_face px is aligned as experiments.extract aligns it (the run's config.data.face_type),
  swapped and pasted back into the photo as evaluation pastes synthetic swaps into their frames
  (encdec_jax/convert.py into_frames): warped back with the inverse transform and the feathered mask: outside the
  mask the photo keeps its own pixels, but for its skin round the face, which takes the swap's tone
  (convert.carry_tone; not with --noblend) (encdec_jax/photos.py).
A run with config.eval.tone=train has each swap's colour calibrated, and one with
config.eval.code_match=train its code matched, on the run's training faces first (the statistics
of the identities other than --to stand for the input's).
--input_kind=auto takes an image for an aligned crop when experiments.extract wrote an alignment
next to it or when it is square and at most 4x the run's resolution on a side, else a photo.
Every PNG carries provenance metadata (synthetic, made by encdec_jax, the run's folder name and
config hash, never a local path; checkpoint step, target, source file); --mark adds a visible
corner mark. What could not be swapped (unreadable, no face, faces too small) is listed at the
end and in --output/swap_report.json with photos' several faces and EXIF rotations.
"""
import json
import os
import sys

from absl import flags

from experiments import _cli

_WORKDIR = flags.DEFINE_string("workdir", None, "a trained run's workdir", required=True)
_TO = flags.DEFINE_string("to", None, "target identity: index or folder name", required=True)
_INPUT = flags.DEFINE_string("input", None, "folder of aligned face crops or photos", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "where swapped PNGs go", required=True)
_BLEND = flags.DEFINE_bool("blend", True, "blend into the input inside the face mask")
_MARK = flags.DEFINE_bool("mark", False, "add a visible corner mark")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
_KIND = flags.DEFINE_enum("input_kind", "auto", ["auto", "crops", "photos"],
                          "what --input holds (auto: see the module doc)")
_LARGEST = flags.DEFINE_bool("largest", False, "photos: swap only the largest face")
_MIN_FACE = flags.DEFINE_float("min_face", 40, "photos: leave faces whose detector box is smaller")
_THRESHOLD = flags.DEFINE_float("threshold", 0.8, "photos: detector score a face needs")

REPORT = "swap_report.json"


def main(argv):
  del argv
  _cli.start()
  import numpy as np
  from tqdm.auto import tqdm
  from encdec_jax import convert, images, inference, photos
  from encdec_jax.pixels import to_unit_float
  from encdec_jax.data import image_files
  if not os.path.isdir(_INPUT.value):
    sys.exit(f"error: --input={_INPUT.value!r} is not a directory")
  problem = photos.output_problem(_INPUT.value, _OUTPUT.value, "swaps")
  if problem:
    sys.exit(f"error: {problem}")
  try:
    run = inference.load_run(_WORKDIR.value, _STEP.value)
    to = inference.resolve_identity(run, _TO.value)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  try:  # config.eval.tone='train': the colour shift into `to`, calibrated on the run's training faces
    shifts = inference.colour_shifts(run)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: the run's config.eval.tone={run.cfg.eval.tone!r} calibrates on its training "
             f"data, which could not be loaded: {e}")
  try:  # config.eval.code_match='train': the code's map into `to`, measured on its training faces
    code = inference.code_stats(run)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: the run's config.eval.code_match={run.cfg.eval.code_match!r} measures its "
             f"training data, which could not be loaded: {e}")
  from encdec_jax import calibration, codematch
  from encdec_jax.decode import take_off
  shift = None if shifts is None else calibration.into(shifts, to)
  affine = None if code is None else codematch.into(code, to)
  r = run.cfg.data.resolution
  names, other = photos.list_inputs(_INPUT.value)
  paths = {n: os.path.join(_INPUT.value, n) for n in names}
  crop = {n: _KIND.value == "crops" or (_KIND.value == "auto" and photos.is_crop(paths[n], r))
          for n in names}
  detector = None
  if not all(crop.values()):
    try:
      detector = photos.Mtcnn(_THRESHOLD.value)
    except ValueError as e:
      sys.exit(f"error: {e}")
  outputs = photos.output_names(names)

  def decode(x):
    rgb, learned = inference.decode(run, x, to, affine=affine)
    rgb = rgb if shift is None else take_off(rgb, shift)
    return rgb, convert.choose_mask(learned, None, r, len(x), run.cfg.data.face_type)

  records = photos.unsupported_records(other, kind=None, output=None)
  for name in tqdm(names, desc=f"swap into {run.identities[to]}", unit="img"):
    rec = {"file": image_files.printable(name), "kind": "crop" if crop[name] else "photo",
           "problems": {}, "output": None}
    records.append(rec)
    if crop[name]:
      try:
        if not os.path.isfile(paths[name]):  # a folder, FIFO or device named like an image
          raise ValueError("not a regular file: not opened")
        x, _ = image_files.load_image(paths[name], r, max(8, r // 4))
      except ValueError as e:
        rec["problems"][photos.problem_of(e)] = str(e)
        continue
      out, _ = inference.swap(run, to_unit_float(x[None]), to, blend=_BLEND.value,
                              shift=shift, affine=affine)
      u8 = np.round(np.clip(out[0], 0, 1) * 255).astype(np.uint8)
      faces = 1
    else:
      try:
        u8, notes = photos.load_photo(paths[name])
      except ValueError as e:
        rec["problems"][photos.problem_of(e)] = str(e)
        continue
      rec["problems"].update({"exif_rotated": n for n in notes if photos.is_rotation(n)})
      found = photos.choose_faces(detector(u8), _MIN_FACE.value, _LARGEST.value)
      rec["problems"].update(found.problems)
      if not found.faces:
        continue
      for face in found.faces:
        u8 = photos.paste_swap(u8, face, decode, r, blend=_BLEND.value,
                               face_type=run.cfg.data.face_type)
      faces = len(found.faces)
    if _MARK.value:
      u8 = images.corner_mark(u8)
    images.save_png(os.path.join(_OUTPUT.value, outputs[name]), u8, extra={
        **run.provenance(), "identity": run.identities[to], "source": rec["file"],
        "blended": _BLEND.value, "input_kind": rec["kind"], "faces_swapped": faces,
        "tone": run.cfg.eval.tone, "code_match": run.cfg.eval.code_match})
    rec["output"] = outputs[name]
    rec["faces_swapped"] = faces
  summary = photos.summarize(records)
  written = sum(r["output"] is not None for r in records)
  os.makedirs(_OUTPUT.value, exist_ok=True)
  with open(os.path.join(_OUTPUT.value, REPORT), "w") as f:
    json.dump({**run.provenance(), "identity": run.identities[to], "written": written,
               "problems": summary, "files": records}, f, indent=1)
  n_photos = sum(r["output"] is not None and r["kind"] == "photo" for r in records)
  print(f"{written} swapped images in {_OUTPUT.value} ({written - n_photos} crops, {n_photos} photos; "
        f"{len(names)} inputs); report: {os.path.join(_OUTPUT.value, REPORT)}")
  for line in photos.problem_lines(records):
    print(line)


if __name__ == "__main__":
  _cli.run(main)
