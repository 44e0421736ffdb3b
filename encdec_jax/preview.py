"""The preview grid a run writes while it trains: held-out frames, the crops the model sees,
their true face swaps, the converted swaps (pasted back into the frame) and the raw decoder
outputs."""
from __future__ import annotations

import numpy as np

from encdec_jax import codematch, images as image_lib
from encdec_jax.decode import BATCH, calibrated, converted, decode_batched
from encdec_jax.pixels import to_unit_float


def preview_grid(params, decode_all, test: dict, num_identities: int, per_identity: int = 3,
                 shifts=None, face_type: str | None = None, code=None) -> np.ndarray:
  """Rows: held-out faces. Columns: input frame | its aligned crop (the model's input) | true
  face swap into 0..N-1 | converted swap into 0..N-1 | raw decoder output 0..N-1 (frames and
  true face swaps only where the data has them; crops shown at the frame's size). `shifts`: the
  (N, N, 3) colour calibration (encdec_jax/calibration.py), taken off the swaps (converted and
  raw). `face_type`: the crops' (config.data.face_type), for the convert's mask where no mask is
  learned or stored. `code`: the code statistics the swaps are matched with (codematch.py)."""
  rows = []
  framed = "frame" in test
  for i in range(num_identities):
    rows_i = np.flatnonzero(test["identity"] == i)
    sel = rows_i[:per_identity]
    x = to_unit_float(test["image"][sel])
    shown = to_unit_float(test["frame"][sel]) if framed else x
    transforms = test["transform"][sel] if framed else None
    data_masks = test["mask"][sel] if "mask" in test else None
    # Decoded in the first call the evaluation makes for identity i (its first BATCH faces), whose
    # program is then compiled once for both (a program per call shape: about 3 s each for the
    # small Original on 8 identities).
    rgb, learned = decode_batched(params, decode_all, to_unit_float(test["image"][rows_i[:BATCH]]),
                                  maps=None if code is None else codematch.maps(code, i))
    rgb, learned = rgb[:, :len(sel)], None if learned is None else learned[:, :len(sel)]
    if shifts is not None:
      rgb = calibrated(rgb, shifts[i], i)
    conv = [converted(shown, rgb[j], None if learned is None else learned[j], data_masks, transforms,
                      face_type) for j in range(num_identities)]
    truth = ([to_unit_float(test["face_swaps"][sel, j]) for j in range(num_identities)]
             if "face_swaps" in test else [])
    side = shown.shape[1]
    inputs = [shown] + ([image_lib.fit(x, side)] if framed else [])
    raw = [image_lib.fit(r, side) for r in rgb]
    for k in range(len(x)):
      rows.append(np.stack([c[k] for c in inputs + truth + conv + raw]))
  return image_lib.grid(np.stack(rows))
