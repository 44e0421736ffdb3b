"""Evaluation on held-out images: reconstruction, and swaps against the stored ground truth.

For every identity i and every decoder j, `decode_all` gives decoder_j(encoder(x_i)). j == i is
the reconstruction; j != i is the swap of x_i into identity j, which the synthetic dataset lets us
compare with the true rendering of the same pose, expression and lighting as identity j.
Scalars are named `eval/<metric>` (means) and `eval/<metric>/<i>` or `/<i>to<j>` (parts).
With judges (encdec_jax/judges.py): `eval/id_transfer` (share of swaps into j recognised as j),
`eval/id_leak` (still recognised as the source), `eval/attr_mae` (pose/expression error against
the source's true factors, standardised units), beside the judges' own floor on real images
(`eval/judge_accuracy`, `eval/attr_mae_floor`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax import images as image_lib
from encdec_jax import losses


def make_decode_all(model):
  """jit(params, x_BxHxWxC) -> (N, B, H, W, 3), x swapped into every identity (RGB only), at
  the input's resolution: an architecture that outputs more (dfaker, 2x) is resized down with an
  antialiased bilinear filter, so metrics compare every architecture at the data's resolution."""
  def f(params, x):
    y = model.apply(params, x, method="decode_all")[..., :3]
    if y.shape[2:4] != x.shape[1:3]:
      y = jax.image.resize(y, y.shape[:2] + x.shape[1:3] + y.shape[-1:], "linear", antialias=True)
    return y
  return jax.jit(f)


@jax.jit
def _pair_metrics(pred, target):
  """Per-example MAE, SSIM and PSNR (peak 1) of images in [0, 1]."""
  mse = losses.mse(pred, target)
  return {"mae": losses.mae(pred, target), "ssim": 1.0 - losses.ssim(pred, target),
          "psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))}


def _by_identity(test: dict, i: int):
  """(images, true swaps or None) of identity i, floats in [0, 1]. Real image folders have no
  ground-truth swaps."""
  sel = test["identity"] == i
  x = test["image"][sel].astype(np.float32) / 255.0
  return x, (test["swaps"][sel].astype(np.float32) / 255.0 if "swaps" in test else None)


def evaluate(params, decode_all, test: dict, num_identities: int, batch: int = 64,
             judges=None) -> dict[str, float]:
  """Scalars for the held-out split `test` (arrays with 'image', 'identity', and where the data
  has them 'swaps' and 'factors'). With `judges` (encdec_jax.judges.Judges) also identity
  transfer and leakage of every swap, and its pose/expression error against the source."""
  out: dict[str, float] = {}
  rec = {m: [] for m in ("mae", "ssim", "psnr")}
  swp = {m: [] for m in ("mae", "ssim", "psnr", "mae_input")}
  jud = {m: [] for m in ("id_transfer", "id_leak", "attr_mae")}
  for i in range(num_identities):
    x, swaps = _by_identity(test, i)
    factors = test["factors"][test["identity"] == i] if "factors" in test else None
    preds = np.concatenate([np.asarray(decode_all(params, x[k:k + batch]))
                            for k in range(0, len(x), batch)], axis=1)  # (N, n, H, W, C)
    for j in range(num_identities):
      if judges is not None and j != i:
        from encdec_jax import judges as judges_lib
        for k, v in judges_lib.swap_scores(judges, preds[j], i, j, factors).items():
          out[f"eval/{k}/{i}to{j}"] = v
          jud[k].append(v)
      if swaps is None and j != i:
        continue  # no ground truth for a swap of a real photo
      truth = x if swaps is None else swaps[:, j]
      m = {k: float(np.mean(v)) for k, v in _pair_metrics(preds[j], truth).items()}
      if j == i:
        for k, v in m.items():
          out[f"eval/recon_{k}/{i}"] = v
          rec[k].append(v)
      else:
        # What a "swap" that returns its input unchanged would score: the bar to beat.
        m["mae_input"] = float(np.mean(np.abs(x - swaps[:, j])))
        for k, v in m.items():
          out[f"eval/swap_{k}/{i}to{j}"] = v
          swp[k].append(v)
  out.update({f"eval/recon_{k}": float(np.mean(v)) for k, v in rec.items()})
  out.update({f"eval/swap_{k}": float(np.mean(v)) for k, v in swp.items() if v})
  out.update({f"eval/{k}": float(np.mean(v)) for k, v in jud.items() if v})
  if judges is not None:  # the judges' own scores on real images: what "perfect" looks like
    out["eval/judge_accuracy"] = judges.accuracy
    if judges.attr_floor is not None:
      out["eval/attr_mae_floor"] = judges.attr_floor
  return out


def preview_grid(params, decode_all, test: dict, num_identities: int, per_identity: int = 3) -> np.ndarray:
  """Rows: held-out faces. Columns: input | decoded as identity 0..N-1 | true identity 0..N-1
  (the last group only where the data has ground-truth swaps)."""
  rows = []
  for i in range(num_identities):
    x, swaps = _by_identity(test, i)
    x = x[:per_identity]
    preds = np.asarray(decode_all(params, x))  # (N, k, H, W, C)
    for k in range(len(x)):
      truth = [] if swaps is None else list(swaps[k])
      rows.append(np.stack([x[k], *preds[:, k], *truth]))
  return image_lib.grid(np.stack(rows))
