"""Detect and align the faces of a folder of photos into training crops.

  python -m experiments.extract --input=photos/alice --output=faces/alice [--size=64]
      [--face_type=whole_face] [--min_face=40] [--min_score=0] [--largest]

Every readable image of --input (png, jpg, jpeg, webp, bmp; EXIF rotation applied) goes through
the face detector (MTCNN, weights shipped in its package); each face whose box is at least
--min_face px on its longer side is aligned to the template of encdec_jax/align.py, framed as
--face_type (the synthetic faces' default framing, config.data.face_type; train with the same
face type: the image folders refuse crops of another), and written
as --output/<photo>_<k>.png (k = 0 for the largest face), with its alignment (source, box,
landmarks, transform, detector score, alignment residual) in <photo>_<k>.json beside it; faces
scoring below --min_score are left out. --output then feeds
`data.name=folders` as it is: make one such folder per identity under one root. Photos with no
face, only small faces, several faces (all used, or the largest with --largest), EXIF rotation,
or that cannot be read are listed at the end and in --output/extract_report.json, which also
gives every crop's score and residual (the landmarks' RMS distance from the template after the
alignment, as a fraction of the crop side): a low score or a large residual is the crop to look
at before training on it.
"""
import json
import os
import sys
import time

from absl import flags

from experiments import _cli

_INPUT = flags.DEFINE_string("input", None, "folder of photos", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "folder for the aligned crops (one identity)",
                              required=True)
_SIZE = flags.DEFINE_integer("size", 64, "side of the crops in pixels (>= data.resolution)")
_FACE_TYPE = flags.DEFINE_string("face_type", "whole_face", "how the crop frames the face: "
                                 "head, whole_face or full_face (encdec_jax/align.py FACE_TYPES)")
_MIN_FACE = flags.DEFINE_float("min_face", 40, "skip faces whose detector box is smaller (px, "
                               "longer side)")
_MIN_SCORE = flags.DEFINE_float("min_score", 0.0, "skip faces whose detector score is lower (the "
                                 "report lists each crop's score and alignment residual)")
_LARGEST = flags.DEFINE_bool("largest", False, "only the largest face of each photo")
_THRESHOLD = flags.DEFINE_float("threshold", 0.8, "detector score a face needs (MTCNN's 0.8; "
                                "the synthetic composites need 0.3)")

REPORT = "extract_report.json"


def main(argv):
  del argv
  _cli.start()
  if not os.path.isdir(_INPUT.value):
    sys.exit(f"error: --input={_INPUT.value!r} is not a directory")
  if _SIZE.value < 16:
    sys.exit(f"error: --size={_SIZE.value}; must be at least 16")
  from tqdm.auto import tqdm
  from encdec_jax import align, images, photos
  if _FACE_TYPE.value not in align.FACE_TYPES:
    sys.exit(f"error: --face_type={_FACE_TYPE.value!r}; valid: {', '.join(sorted(align.FACE_TYPES))}")
  problem = photos.output_problem(_INPUT.value, _OUTPUT.value, "crops")
  if problem:
    sys.exit(f"error: {problem}")
  from encdec_jax.data import image_files
  names, other = photos.list_inputs(_INPUT.value)
  if not names:
    sys.exit(f"error: --input={_INPUT.value!r} holds no images ({', '.join(image_files.IMAGE_EXTENSIONS)})")
  try:
    detector = photos.Mtcnn(_THRESHOLD.value)
  except ValueError as e:
    sys.exit(f"error: {e}")
  stems = {n: os.path.splitext(o)[0] for n, o in photos.output_names(names).items()}
  os.makedirs(_OUTPUT.value, exist_ok=True)
  records, written, t0 = photos.unsupported_records(other, crops=[], notes=[]), 0, time.perf_counter()
  for name in tqdm(names, desc="extract", unit="photo"):
    rec = {"file": image_files.printable(name), "crops": [], "problems": {}, "notes": []}
    records.append(rec)
    try:
      photo, notes = photos.load_photo(os.path.join(_INPUT.value, name))
    except ValueError as e:
      rec["problems"][photos.problem_of(e)] = str(e)
      continue
    for n in notes:
      if photos.is_rotation(n):
        rec["problems"]["exif_rotated"] = n
      else:
        rec["notes"].append(n)
    found = photos.choose_faces(detector(photo), _MIN_FACE.value, _LARGEST.value, _MIN_SCORE.value)
    rec["problems"].update(found.problems)
    rec["detected"] = found.detected
    for k, face in enumerate(found.faces):
      out = f"{stems[name]}_{k}"
      info = photos.alignment(face, _SIZE.value, rec["file"], detector.version, _FACE_TYPE.value)
      crop = align.crop(photo, info["transform"], _SIZE.value)
      images.save_png(os.path.join(_OUTPUT.value, out + ".png"), crop, synthetic=False)
      with open(os.path.join(_OUTPUT.value, out + ".json"), "w") as f:
        json.dump(info, f, indent=1)
      rec["crops"].append({"crop": out + ".png", "score": info["score"], "residual": info["residual"]})
      written += 1
  seconds = time.perf_counter() - t0
  summary = photos.summarize(records)
  report = {"input": os.path.basename(os.path.realpath(_INPUT.value)), "size": _SIZE.value,
            "face_type": _FACE_TYPE.value, "min_face": _MIN_FACE.value,
            "largest": _LARGEST.value, "threshold": _THRESHOLD.value, "min_score": _MIN_SCORE.value,
            "detector": detector.version,
            "photos": len(names), "crops": written, "seconds": round(seconds, 2),
            "problems": summary, "files": records}
  with open(os.path.join(_OUTPUT.value, REPORT), "w") as f:
    json.dump(report, f, indent=1)
  print(f"{written} face crops from {len(names)} photos in {_OUTPUT.value} "
        f"({written / max(seconds, 1e-9):.1f} faces/s); report: {os.path.join(_OUTPUT.value, REPORT)}")
  for line in photos.problem_lines(records):
    print(line)


if __name__ == "__main__":
  _cli.run(main)
