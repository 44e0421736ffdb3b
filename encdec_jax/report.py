"""A sweep's report: results.csv and results.md (the table), report.md (what each metric means,
how good the judges are, the table, one plot per headline metric against every swept axis with
its reference lines, the swap grid, and the spread over seeds)."""
from __future__ import annotations

import csv
import os

import numpy as np

from encdec_jax import judges
from encdec_jax.data.render import POSE_EXPRESSION

# Headline metrics, in table order, with what each means. See encdec_jax/evaluate.py.
METRICS = {
    "swap_face_mae": "converted swap (decoder j on encoder(x_i), blended into x_i inside the face "
                     "mask) against the true face swap (x_i's frame with j's face), inside the face "
                     "region (lower is better)",
    "swap_mae": "the same over the whole frame",
    "swap_face_ssim": "the face-region comparison by SSIM (higher is better)",
    "id_transfer": "share of converted swaps into j that the identity judge, reading the face "
                   "region only, recognises as j (higher is better)",
    "id_leak": "share still recognised as the source identity (lower is better)",
    "attr_mae": "pose/expression error of the converted swap against its source, in standard "
                "deviations, over the factors the judge can read (lower is better)",
    "recon_face_mae": "decoder i on encoder(x_i), converted, against x_i, inside the face",
    "recon_attr_mae": "attr_mae of the converted reconstructions (i -> i): can the model draw the "
                      "expression at all",
    "probe_id_accuracy": "identity read by a linear probe from the shared latent (chance is "
                         "ideal: a shared latent)",
    "raw_swap_mae": "the raw decoder output (no convert) against j's full-head rendering",
}
# Reference lines drawn on each metric's plots: (result key, label).
REFERENCES = {
    "swap_face_mae": (("eval/swap_face_mae_input", "copying the input"),
                      ("eval/swap_face_mae_oracle", "j's true head, converted")),
    "swap_mae": (("eval/swap_mae_input", "copying the input"),),
    "attr_mae": (("eval/attr_mae_floor", "judge's floor (real faces)"),
                 ("eval/attr_mae_mean_face", "j's mean face, converted"),
                 ("eval/attr_mae_guess", "guessing the mean")),
    "id_transfer": (("eval/id_transfer_truth", "the true face swaps"),
                    ("eval/id_transfer_mean_face", "j's mean face, converted")),
}


# Why a swap fails: its reconstructions against its swaps, and the latent probes (probes.py).
DIAGNOSIS = ("recon_attr_mae", "attr_mae", "blur_attr_mae", "recon_id_accuracy", "id_transfer",
             "id_transfer_tone_matched", "id_transfer_uncalibrated", "tone_shift", "probe_id_accuracy",
             "probe_attr_same", "probe_attr_cross", "swap_variation", "swap_tone_gap")
ONE_FACE = 0.25  # swap_variation below this: the decoders paint one face whatever the input
EXPRESSION = POSE_EXPRESSION[3:]  # smile, mouth_open, blink, brow_raise
CURVES = ("attr_mae", "id_transfer", "swap_face_mae", "recon_attr_mae")


def threshold(r: dict) -> float:
  """Halfway between the judge's floor and what a decoder that ignores its input scores (j's mean
  face converted into the source's frame: it gets the pose from the mask's outline); where that
  was not measured, guessing the mean."""
  bar = r.get("eval/attr_mae_mean_face", r["eval/attr_mae_guess"])
  return (r["eval/attr_mae_floor"] + bar) / 2


def diagnose(r: dict) -> str | None:
  """Which of the two causes a run's numbers show (None without the judges' factors): the
  swap's expression error against `threshold(r)`."""
  need = ("eval/recon_attr_mae", "eval/attr_mae", "eval/attr_mae_floor", "eval/attr_mae_guess")
  if any(k not in r for k in need):
    return None
  expression = [n for n in EXPRESSION if f"eval/attr_floor/{n}" in r]
  if expression and not any(judges.is_readable(r[f"eval/attr_floor/{n}"], r[f"eval/attr_guess/{n}"])
                            for n in expression):
    # Pose alone can be read from the frame around a blank face (the mask's outline): no verdict.
    return "no verdict: the judge reads no expression at this resolution"
  mid = threshold(r)
  if r.get("eval/blur_attr_mae", 0.0) >= mid:  # the true swap, only blurred, already fails
    return (f"no verdict: blur alone (the true swap blurred to this decoder's sharpness, sigma "
            f"{r.get('eval/blur_sigma', float('nan')):.2g} px) scores attr_mae {r['eval/blur_attr_mae']:.2f}: "
            "the judge cannot tell this blur from a change of expression")
  if r.get("eval/swap_variation", 1.0) < ONE_FACE:
    return (f"one face whatever the input: the swaps vary {r['eval/swap_variation']:.2f} as much as "
            "the true swaps (the decoders ignore the code; compare the mean face's scores)")
  if r["eval/attr_mae"] < mid:
    return "swap keeps the expression"
  if r["eval/recon_attr_mae"] >= mid:
    return "cause 1: not drawn (its own reconstructions lose the expression too)"
  probe = r.get("eval/probe_id_accuracy")
  return ("cause 2: not shared (reconstructions keep the expression, swaps lose it"
          + (f"; identity read from the latent {probe:.0%})" if probe is not None else ")"))


def headline(results: list[dict]) -> list[str]:
  return [f"eval/{m}" for m in METRICS if any(f"eval/{m}" in r for r in results)]


def _fmt(v) -> str:
  return f"{v:.4f}" if isinstance(v, float) else str(v)


def table(results: list[dict], cols: list[str]) -> list[str]:
  """A markdown table of `cols` (short names: without 'config.' and 'eval/')."""
  short = [c.replace("config.", "").replace("eval/", "") for c in cols]
  return (["| " + " | ".join(short) + " |", "|" + "---|" * len(cols)]
          + ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in results])


def _best(results, metric) -> str | None:
  scored = [r for r in results if metric and metric.get("name") in r]
  if not scored:
    return None
  best = sorted(scored, key=lambda r: r[metric["name"]], reverse=metric.get("goal") == "maximize")[0]
  line = f"Best by `{metric['name']}` ({metric.get('goal', 'minimize')}): **{best['run']}**"
  why = diagnose(best)
  if why and why.startswith("one face"):  # a collapse can win every metric: say so where it wins
    line += f" (but its diagnosis says: {why})"
  return line


def write_report(results: list[dict], out_dir: str, param_keys: list[str], metric: dict) -> None:
  """results.csv, results.md, report.md and the plots and grid they show."""
  if not results:
    return
  heads = headline(results)
  cols = ["run", *param_keys, "step", *heads]
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    keys = sorted(set().union(*results) - set(cols))
    w = csv.DictWriter(f, fieldnames=cols + keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(results)
  plots = plot_metrics(results, out_dir, param_keys, heads)
  best = _best(results, metric)
  lines = [f"# Sweep results ({len(results)} runs)", ""] + ([best, ""] if best else [])
  lines += table(results, cols) + [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  _write_full_report(results, out_dir, param_keys, best, heads, plots)


def seed_spread(results: list[dict], param_keys: list[str], metrics: list[str]) -> list[dict]:
  """Groups runs that differ only in config.seed: per group, n and the mean and std of each metric
  (an empty list when no setting ran with more than one seed)."""
  others = [k for k in param_keys if k != "config.seed"]
  groups: dict = {}
  for r in results:
    groups.setdefault(tuple(str(r.get(k)) for k in others), []).append(r)
  out = []
  for key, rs in groups.items():
    if len(rs) < 2:
      continue
    row = {"setting": ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, key)), "n": len(rs)}
    for m in metrics:
      v = [r[m] for r in rs if m in r]
      if v:
        row[m] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
    out.append(row)
  return out


def _judges_lines(results: list[dict]) -> list[str]:
  r = results[0]
  if "eval/judge_accuracy" not in r:
    return []
  out = [f"Judges (fitted once on this dataset's training images, face region only): identity "
         f"accuracy {100 * r['eval/judge_accuracy']:.1f}% on held-out renderings."]
  if "eval/attr_mae_floor" in r:
    rows = [(n, r.get(f"eval/attr_floor/{n}"), r.get(f"eval/attr_guess/{n}")) for n in POSE_EXPRESSION]
    rows = [x for x in rows if x[1] is not None]
    scored = [n for n, f, g in rows if judges.is_readable(f, g)]
    left = [n for n, f, g in rows if not judges.is_readable(f, g)]
    out[0] += (f" Pose/expression floor {r['eval/attr_mae_floor']:.3f} std units against "
               f"{r['eval/attr_mae_guess']:.3f} for guessing the mean; `attr_mae` averages "
               + ", ".join(scored) + "."
               + (f" Left out (the judge's floor is above half of guessing): {', '.join(left)}." if left else ""))
    err = lambda n: np.mean([x.get(f"eval/attr_err/{n}", np.nan) for x in results])
    out += ["", "| factor | judge's floor | guessing the mean | runs' mean error |", "|---|---|---|---|"]
    out += [f"| {n} | {f:.2f} | {g:.2f} | {err(n):.2f} |" for n, f, g in rows]
  return out


def _write_full_report(results, out_dir, param_keys, best, heads, plots):
  lines = [f"# Sweep report: {os.path.basename(os.path.abspath(out_dir))}", "",
           f"{len(results)} runs. Metrics on held-out faces at each run's last step:", ""]
  lines += [f"- `{k}`: {v}" for k, v in METRICS.items() if f"eval/{k}" in heads]
  first = results[0]
  if _judges_lines(results):
    lines += [""] + _judges_lines(results)
  missing = [m for m in ("eval/swap_face_mae", "eval/attr_mae") if m not in first]
  if missing:
    lines += ["", "Not possible on this data (no true swaps or factors): "
              + ", ".join(f"`{m[5:]}`" for m in missing) + "."]
  if best:
    lines += ["", best]
  failed = [r for r in results if r.get("status") == "failed"]
  if failed:
    lines += ["", f"**{len(failed)} run(s) failed** and have no metrics (a non-finite loss; "
              "re-run the sweep with `--set train.nonfinite=skip` to skip such steps, or lower "
              "`train.lr` in a new `--workdir`):"]
    lines += [f"- `{r['run']}`: {r.get('error', 'failed')}" for r in failed]
  lines += [""] + table(results, ["run", *param_keys, *heads])
  lines += [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
  grid = swap_grid(results, out_dir)
  if grid:
    lines += ["", "## The same held-out faces, swapped by every run", "",
              "Top row: inputs (identity i); second row: the true face swap into the next identity "
              "(the input's frame with that identity's face); then one row per run: its converted "
              "swap of each input (decoded as the next identity, blended into the input inside the "
              "face mask" + ("; runs with `eval.tone=train`: its colour calibrated first" if any(
                  "eval/tone_shift" in r for r in results) else "") + ").", "", f"![swap grid]({grid})"]
  diag = [r for r in results if diagnose(r)]
  if diag:
    bar = ("what j's mean face scores converted into the source's frame (a decoder that ignores "
           "its input; it gets the pose from the mask's outline)"
           if "eval/attr_mae_mean_face" in results[0] else "guessing the mean")
    mid = f"halfway between the judge's floor and {bar}"
    lines += ["", "## Why the swaps fail (or not)", "",
              "Cause 1: the model cannot draw the expression at all (its reconstructions A -> A lose "
              "it too). Cause 2: it draws it for its own identity, but the latent is not shared (a "
              "linear probe reads the identity from the code, and pose/expression probes fitted "
              f"on one identity do not transfer to another). Threshold: {mid}. `swap_variation`: how much "
              "the raw swaps vary from input to input against the true swaps; below "
              f"{ONE_FACE} the decoders paint one face whatever the input. `swap_tone_gap`: the "
              "swaps' mean colour inside the face against the true swaps', per pair signed in "
              "`results.csv` (> 0: lighter); a decoder that never met the source's codes paints "
              "its own guess of the light; `id_transfer_tone_matched`: the identity judge on the "
              "swaps with that gap taken off (how much of a failed transfer is the tone alone). "
              "With `eval.tone=train` every swap here was calibrated before it was converted "
              "(encdec_jax/tone.py: the colour shift each decoder puts on the other identities' "
              "training faces, `tone_shift`, taken off); `id_transfer_uncalibrated` is the judge "
              "on the same swaps without it. "
              "`blur_attr_mae`: the "
              "true face swaps blurred to each decoder's sharpness (`blur_sigma`, px), judged: if "
              "blur alone fails, the judge cannot separate blur from expression and no cause is "
              "named.", ""]
    lines += ["| run | " + " | ".join(DIAGNOSIS) + " | diagnosis |", "|" + "---|" * (len(DIAGNOSIS) + 2)]
    lines += [f"| {r['run']} | " + " | ".join(_fmt(r.get(f"eval/{m}", "")) for m in DIAGNOSIS)
              + f" | {diagnose(r)} |" for r in diag]
  curves = plot_curves(results, out_dir)
  if curves:
    lines += ["", "## Against training steps", "",
              "Headline metrics at every evaluation (`eval.every`) and the last step, one line per "
              "run: when is it good enough.", "", f"![curves]({curves})"]
  spread = seed_spread(results, param_keys, heads)
  lines += ["", "## Spread over seeds", ""]
  if spread:
    ms = [m for m in heads if any(m in r for r in spread)]
    lines += ["| setting | seeds | " + " | ".join(m[5:] for m in ms) + " |", "|" + "---|" * (2 + len(ms))]
    for r in spread:
      cells = [f"{r[m][0]:.4f} ± {r[m][1]:.4f}" if m in r else "" for m in ms]
      lines.append(f"| {r['setting']} | {r['n']} | " + " | ".join(cells) + " |")
    lines += ["", "mean ± sample std over seeds: differences smaller than about twice the std "
              "are noise."]
  else:
    lines += ["Every setting ran with one seed (`config.seed` is not a parameter of this sweep), so "
              "these numbers carry no error bars. Add `config.seed: {values: [0, 1]}` to the YAML "
              "to measure the spread."]
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def plot_metrics(results: list[dict], out_dir: str, param_keys: list[str], metrics: list[str]) -> list[str]:
  """One PNG per metric: a panel per swept axis with more than one value, the metric against
  that axis (mean over seeds, bars: their std), one line per setting of the other axes, and the
  metric's reference lines (REFERENCES: copying, the judge's floor, guessing the mean)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
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
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, key)) or None
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
        ax.set_xticks(range(len(values)), [str(v) for v in values], fontsize=7)
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


def eval_curve(workdir: str, metric: str) -> list[tuple[int, float]]:
  """(step, value) of `metric` from a run's metrics.jsonl evaluation rows, in step order."""
  import json
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  pts = {}
  with open(path) as f:
    for ln in f:
      try:
        row = json.loads(ln)
      except ValueError:
        continue
      if isinstance(row.get(metric), (int, float)):
        pts[int(row["step"])] = float(row[metric])
  return sorted(pts.items())


def plot_curves(results: list[dict], out_dir: str) -> str | None:
  """curves.png: each CURVES metric against training steps, a line per run; None if no run
  evaluated more than once."""
  runs = {r["run"]: {m: eval_curve(os.path.join(out_dir, r["run"]), f"eval/{m}") for m in CURVES}
          for r in results if "run" in r}
  metrics = [m for m in CURVES if any(len(c[m]) > 1 for c in runs.values())]
  if not metrics:
    return None
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
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


def swap_grid(results, out_dir, per_identity: int = 3) -> str | None:
  """swap_grid.png: fixed held-out faces, their true face swaps, and every run's converted swap
  of them (one row per run); None if the runs cannot be loaded or do not share an image size."""
  from encdec_jax import images as image_lib, inference
  from encdec_jax.data.loading import load_data
  rows, labels = [], []
  try:
    first = inference.load_run(os.path.join(out_dir, results[0]["run"]))
  except Exception:  # noqa: BLE001 - a report without its grid beats no report
    return None
  trn, test = load_data(first.cfg)
  n = first.cfg.data.identities
  picks = [k for i in range(n) for k in np.flatnonzero(test["identity"] == i)[:per_identity]]
  x = test["image"][picks].astype(np.float32) / 255.0
  masks = test["mask"][picks] if "mask" in test else None
  ids = test["identity"][picks]
  target = (ids + 1) % n
  rows.append(x)
  labels.append("input")
  if "face_swaps" in test:
    rows.append(test["face_swaps"][picks, target].astype(np.float32) / 255.0)
    labels.append("true face swap")
  for r in results:
    try:
      run = first if r is results[0] else inference.load_run(os.path.join(out_dir, r["run"]))
    except Exception:  # noqa: BLE001
      continue
    if run.cfg.data.resolution != first.cfg.data.resolution:
      continue
    out = np.zeros_like(x)
    shifts = inference.tone_shifts(run, trn if run.cfg.data == first.cfg.data else None)
    for s in np.unique(ids):  # one batched call per source identity (its target is the next)
      sel = ids == s
      t = int(target[sel][0])
      out[sel] = inference.swap(run, x[sel], t, masks=None if masks is None else masks[sel],
                                shift=None if shifts is None else shifts[int(s), t])[0]
    rows.append(out)
    labels.append(r["run"])
  g = image_lib.grid(np.stack(rows))
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  h, w = g.shape[:2]
  fig, ax = plt.subplots(figsize=(2 + w / 20, 0.5 + h / 20))  # ~5 screen pixels per image pixel
  ax.imshow(g, interpolation="nearest")
  step = h / len(rows)
  ax.set_yticks([step * (k + 0.5) for k in range(len(rows))], labels, fontsize=7)
  ax.set_xticks([])
  fig.tight_layout()
  name = "swap_grid.png"
  fig.savefig(os.path.join(out_dir, name), dpi=100, bbox_inches="tight", metadata={
      "Software": "encdec_jax", "Description": image_lib.PROVENANCE})
  plt.close(fig)
  return name


