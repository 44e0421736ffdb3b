"""Write synthetic "photos" of a few identities to try the photo path without anyone's pictures.

  python -m experiments.make_photos --output=photos [--names=alice,bob] [--per_identity=80]
      [--height=160] [--width=208]

Each identity (a synthetic face of family 0, in --names order) gets --per_identity PNGs in
--output/<name>/: its face pasted at a random place, size (96-128 px) and roll over a smooth
random background (encdec_jax/data/composites.py), with the true landmarks of every photo in
--output/<name>/landmarks.json. Then run the README's "From your photos" commands on them,
with --threshold=0.3 for the detector (cartoon faces score lower than real ones).
"""
import json
import os
import sys

from absl import flags

from experiments import _cli

_OUTPUT = flags.DEFINE_string("output", None, "root folder for the photos", required=True)
_NAMES = flags.DEFINE_list("names", ["alice", "bob"], "one folder per identity, in this order")
_PER = flags.DEFINE_integer("per_identity", 80, "photos per identity")
_H = flags.DEFINE_integer("height", 160, "photo height (px)")
_W = flags.DEFINE_integer("width", 208, "photo width (px)")


def names_error(names: list[str]) -> str | None:
  """Why --names cannot be the folders inside --output (one line), or None."""
  bad = [n for n in names if not n or n in (".", "..") or os.sep in n or "/" in n or n.startswith(".")]
  if bad or len(set(names)) != len(names):
    return (f"error: --names={','.join(names)!r}: need distinct plain folder names (not empty, '.', "
            f"'..', hidden or a path; bad: {bad or 'repeated'}), each a folder inside --output")
  return None


def main(argv):
  del argv
  _cli.start()
  from encdec_jax import images
  from encdec_jax.data import composites
  err = names_error(_NAMES.value)
  if err:
    sys.exit(err)
  if min(_H.value, _W.value) < 128:
    sys.exit(f"error: --height={_H.value} --width={_W.value}: both must be at least 128 (the face tile)")
  for ident, name in enumerate(_NAMES.value):
    folder = os.path.join(_OUTPUT.value, name)
    truth = {}
    for k in range(_PER.value):
      p = composites.random_photo(k, ident, _H.value, _W.value)
      images.save_png(os.path.join(folder, f"{name}_{k:03d}.png"), p.image,
                      extra={"source": "encdec_jax.data.composites", "identity": ident})
      truth[f"{name}_{k:03d}.png"] = p.landmarks.round(2).tolist()
    with open(os.path.join(folder, "landmarks.json"), "w") as f:
      json.dump({"names": ["left_eye", "right_eye", "nose", "mouth"], "photos": truth}, f)
  print(f"{_PER.value} photos each of {', '.join(_NAMES.value)} in {_OUTPUT.value}")


if __name__ == "__main__":
  _cli.run(main)
