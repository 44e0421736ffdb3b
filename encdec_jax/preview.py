"""The preview grid a run writes while it trains: held-out faces, their true face swaps, the
converted swaps and the raw decoder outputs."""
from __future__ import annotations

import numpy as np

from encdec_jax import images as image_lib
from encdec_jax.decode import calibrated, converted, decode_batched
from encdec_jax.pixels import to_unit_float


def preview_grid(params, decode_all, test: dict, num_identities: int, per_identity: int = 3,
                 shifts=None) -> np.ndarray:
  """Rows: held-out faces. Columns: input | true face swap into 0..N-1 | converted swap into
  0..N-1 | raw decoder output 0..N-1 (the true face swaps only where the data has them).
  `shifts`: the (N, N, 3) colour calibration (encdec_jax/calibration.py), taken off the swaps
  (converted and raw)."""
  rows = []
  for i in range(num_identities):
    sel = np.flatnonzero(test["identity"] == i)[:per_identity]
    x = to_unit_float(test["image"][sel])
    data_masks = test["mask"][sel] if "mask" in test else None
    rgb, learned = decode_batched(params, decode_all, x)
    if shifts is not None:
      rgb = calibrated(rgb, shifts[i], i)
    conv = [converted(x, rgb[j], None if learned is None else learned[j], data_masks)
            for j in range(num_identities)]
    truth = ([to_unit_float(test["face_swaps"][sel, j]) for j in range(num_identities)]
             if "face_swaps" in test else [])
    for k in range(len(x)):
      rows.append(np.stack([x[k], *(t[k] for t in truth), *(c[k] for c in conv), *rgb[:, k]]))
  return image_lib.grid(np.stack(rows))
