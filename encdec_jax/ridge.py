"""Closed-form ridge readouts with their strength cross-validated, as the judges fit them."""
from __future__ import annotations

import numpy as np

STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def ridge(g, fy, n, lam):
  """Ridge weights from the Gram matrix g = f.T f and fy = f.T y of n rows."""
  a = g + lam * n / 100.0 * np.eye(g.shape[0], dtype=np.float64)
  return np.linalg.solve(a, fy).astype(np.float32)


def ridge_cv(f, y, copies: int, lams=STRENGTHS):
  """Ridge with its strength chosen per output column on a fixed 20% of the training images
  (every 5th, with all its copies: rows are `copies` blocks of the same images), refitted on all.
  The Gram matrix (most of the cost: rows x features^2) is formed once for all strengths, and
  the held-out rows' part added for the refit."""
  val = np.tile(np.arange(len(f) // copies) % 5 == 0, copies)
  fit, held = f[~val], f[val]
  g, fy = fit.T @ fit, fit.T @ y[~val]
  errs = np.stack([np.abs(held @ ridge(g, fy, len(fit), lam) - y[val]).mean(0) for lam in lams])
  best = errs.argmin(0)
  g, fy = g + held.T @ held, fy + held.T @ y[val]  # all rows
  full = {int(b): ridge(g, fy, len(f), lams[b]) for b in set(best.tolist())}
  return np.stack([full[int(b)][:, c] for c, b in enumerate(best)], 1)
