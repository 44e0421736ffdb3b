"""The report's figures: each headline metric against every swept axis, the evaluation curves
against training steps, and the labelled swap grid. matplotlib is imported on first use, with the
Agg backend (no display)."""
from __future__ import annotations

import os

import numpy as np

from encdec_jax import images as image_lib
from encdec_jax.metrics import REFERENCES

CURVES = ("expr_mae", "pose_mae", "id_transfer", "swap_face_mae", "recon_expr_mae")


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def wrap(text: str, width: int = 32) -> str:
  """`text` in lines of at most `width` characters, broken only after a comma (a loss spec's
  terms, a legend's settings): a term longer than `width` keeps a line of its own. Joining the
  lines gives `text` back."""
  lines = [""]
  for part in text.split(","):
    piece = part if lines == [""] else "," + part
    if lines[-1] and len(lines[-1]) + len(piece) > width:
      lines[-1] += ","
      lines.append(part)
    else:
      lines[-1] += piece
  return "\n".join(lines)


def plot_metrics(results: list[dict], out_dir: str, param_keys: list[str], metrics: list[str]) -> list[str]:
  """One PNG per metric: a panel per swept axis with more than one value, the metric against
  that axis (mean over seeds, bars: their std), one line per setting of the other axes, and the
  metric's reference lines (REFERENCES: copying, the judge's floor, guessing the mean)."""
  plt = _pyplot()
  axes = [k for k in param_keys if k != "config.seed" and len({str(r.get(k)) for r in results}) > 1]
  if not axes:
    return []
  names = []
  for m in metrics:
    fig, panels = plt.subplots(1, len(axes), figsize=(4.6 * len(axes), 3.4), squeeze=False)
    for ax, xk in zip(panels[0], axes):
      others = [k for k in axes if k != xk]
      values = sorted({r.get(xk) for r in results}, key=lambda v: (isinstance(v, str), v))
      numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
      pos = {v: (v if numeric else i) for i, v in enumerate(values)}
      groups: dict = {}
      for r in results:
        if m in r:
          groups.setdefault(tuple(str(r.get(k)) for k in others), {}).setdefault(r.get(xk), []).append(r[m])
      for key, pts in sorted(groups.items()):
        xs = [v for v in values if v in pts]
        label = wrap(", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, key)), 40) or None
        ax.errorbar([pos[v] for v in xs], [np.mean(pts[v]) for v in xs],
                    yerr=[np.std(pts[v], ddof=1) if len(pts[v]) > 1 else 0.0 for v in xs],
                    marker="o", capsize=3, label=label)  # sample std, as the seed-spread table
      for ref, (key, label) in enumerate(REFERENCES.get(m[5:], ())):
        vals = [r[key] for r in results if key in r]
        if vals:
          ax.axhline(float(np.mean(vals)), color=f"C{7 + ref}", ls="--", lw=1, label=label)
      if numeric and min(values) > 0 and max(values) / min(values) >= 8:
        ax.set_xscale("log", base=2)
      if not numeric:
        ax.set_xticks(range(len(values)), [wrap(str(v), 44 // len(values)) for v in values], fontsize=7)
      ax.set_xlabel(xk.replace("config.", ""))
      ax.set_ylabel(m[5:])
      ax.grid(alpha=0.3)
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.suptitle(f"{m[5:]} (held-out faces)")
    fig.tight_layout()
    name = m.replace("eval/", "").replace("/", "_") + ".png"
    fig.savefig(os.path.join(out_dir, name), dpi=100)
    plt.close(fig)
    names.append(name)
  return names


def plot_curves(runs: dict, results: list[dict], out_dir: str) -> str | None:
  """curves.png: each CURVES metric against training steps, a line per run (`runs`: name ->
  metric -> [(step, value)]); None if no run evaluated more than once."""
  metrics = [m for m in CURVES if any(len(c[m]) > 1 for c in runs.values())]
  if not metrics:
    return None
  plt = _pyplot()
  legend_h = 0.16 * ((len(runs) + 1) // 2) + 0.1  # inches
  fig, panels = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4 + legend_h), squeeze=False)
  for ax, m in zip(panels[0], metrics):
    for k, (name, c) in enumerate(sorted(runs.items())):
      if c[m]:
        ax.plot(*zip(*c[m]), marker=".", color=f"C{k % 10}", label=name)
    for ref, (key, label) in enumerate(REFERENCES.get(m.removeprefix("recon_"), ())):
      vals = [r[key] for r in results if key in r]
      if vals:
        ax.axhline(float(np.mean(vals)), color=f"C{7 + ref}", ls="--", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(m)
    ax.grid(alpha=0.3)
  # The legend below the panels, never over a line: one row per two runs.
  handles, labels = panels[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
  fig.tight_layout(rect=(0, legend_h / (3.4 + legend_h), 1, 1))
  fig.savefig(os.path.join(out_dir, "curves.png"), dpi=100)
  plt.close(fig)
  return "curves.png"


def swap_grid(rows, labels, out_dir: str) -> str:
  """swap_grid.png: the (R, B, H, W, 3) image rows as one grid, each row labelled; carries the
  provenance label."""
  g = image_lib.grid(np.stack(rows))
  plt = _pyplot()
  h, w = g.shape[:2]
  fig, ax = plt.subplots(figsize=(2 + w / 20, 0.5 + h / 20))  # ~5 screen pixels per image pixel
  ax.imshow(g, interpolation="nearest")
  step = h / len(rows)
  ax.set_yticks([step * (k + 0.5) for k in range(len(rows))], labels, fontsize=7)
  ax.set_xticks([])
  fig.tight_layout()
  name = "swap_grid.png"
  fig.savefig(os.path.join(out_dir, name), dpi=100, bbox_inches="tight", metadata={
      "Software": "encdec_jax", "Description": image_lib.PROVENANCE, "encdec_jax:synthetic": "true"})
  plt.close(fig)
  return name
