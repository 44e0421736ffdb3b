"""A sweep's report: results.csv and results.md (the table), report.md (what each metric means,
how good the judges are, the table, one plot per headline metric against every swept axis with
its reference lines, the swap grid, why the swaps fail, the curves, and the spread over seeds).
The diagnosis is encdec_jax/diagnosis.py, the figures encdec_jax/plots.py, the metrics' meanings
encdec_jax/metrics.py."""
from __future__ import annotations

import csv
import os

import numpy as np

from encdec_jax import inference, plots, tracking
from encdec_jax.data.render import POSE_EXPRESSION
from encdec_jax.diagnosis import COLUMNS as DIAGNOSIS
from encdec_jax.diagnosis import ONE_FACE, diagnose, paired_difference, seed_spread, settings
from encdec_jax.judges import is_readable
from encdec_jax.metrics import HEADLINE, meaning
from encdec_jax.workdir import METRICS, read_samples

def headline(results: list[dict]) -> list[str]:
  return [f"eval/{m}" for m, _ in HEADLINE if any(f"eval/{m}" in r for r in results)]


def _fmt(v) -> str:
  return f"{v:.4f}" if isinstance(v, float) else str(v)


def _cell(r: dict, col: str) -> str:
  """A result's value, with ± its bootstrap standard error where the run has one."""
  se = r.get(f"{col}_se")
  return _fmt(r.get(col, "")) + (f" ± {se:.4f}" if isinstance(se, float) and col in r else "")


def table(results: list[dict], cols: list[str]) -> list[str]:
  """A markdown table of `cols` (short names: without 'config.' and 'eval/'); metrics with a
  standard error over the held-out images show it (value ± SE)."""
  short = [c.replace("config.", "").replace("eval/", "") for c in cols]
  return (["| " + " | ".join(short) + " |", "|" + "---|" * len(cols)]
          + ["| " + " | ".join(_cell(r, c) for c in cols) + " |" for r in results])


def best_setting(results: list[dict], param_keys: list[str], metric: dict | None):
  """(the setting the report names best: the best mean over seeds of the sweep's metric, its runs)
  among settings whose every finished run has the metric; None when fewer than one."""
  name = (metric or {}).get("name")
  groups = settings([r for r in results if r.get("status") != "failed"], param_keys)
  means = {k: float(np.mean([r[name] for r in rs])) for k, rs in groups.items()
           if name and all(name in r for r in rs)}
  if not means:
    return None
  best = (max if metric.get("goal") == "maximize" else min)(means, key=means.get)
  return best, groups[best]


def _best(results, metric, param_keys: list[str] = ()) -> str | None:
  """The headline: the best setting by the sweep's metric, its mean over seeds where it ran with
  more than one (a single lucky seed is not a result), and the best single run."""
  scored = [r for r in results if metric and metric.get("name") in r]
  if not scored:
    return None
  name = metric["name"]
  best = sorted(scored, key=lambda r: r[name], reverse=metric.get("goal") == "maximize")[0]
  top = best_setting(results, list(param_keys), metric)
  if top and len({r.get("config.seed") for r in top[1]}) > 1:  # a setting over seeds
    key, runs = top
    v = [r[name] for r in runs]
    line = (f"Best by `{name}` ({metric.get('goal', 'minimize')}, the sweep's metric), mean over "
            f"seeds: **{key}**, {np.mean(v):.4f} ± {np.std(v, ddof=1):.4f} (std over {len(v)} seeds); "
            f"the best single run: {best['run']}, {_cell(best, name)}")
  else:
    runs = [best]
    line = (f"Best by `{name}` ({metric.get('goal', 'minimize')}, the sweep's metric): "
            f"**{best['run']}**, {_cell(best, name)}")
  whys = [w for w in map(diagnose, runs) if w and w.startswith("one face")]
  if whys:  # a collapse can win every metric: say so where it wins
    line += f" (but its diagnosis says: {whys[0]})"
  return line


def write_report(results: list[dict], out_dir: str, param_keys: list[str], metric: dict) -> None:
  """results.csv, results.md, report.md and the plots and grid they show."""
  if not results:
    return
  heads = headline(results)
  cols = ["run", *param_keys, "step", *heads]
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    first = ["run", *param_keys, "step"]  # then each headline metric with its standard error
    first += [k for h in heads for k in (h, f"{h}_se") if any(k in r for r in results)]
    keys = sorted(set().union(*results) - set(first))
    w = csv.DictWriter(f, fieldnames=first + keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(results)
  figures = plots.plot_metrics(results, out_dir, param_keys, heads)
  best = _best(results, metric, param_keys)
  lines = [f"# Sweep results ({len(results)} runs)", ""] + ([best, ""] if best else [])
  lines += table(results, cols) + [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in figures]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  _write_full_report(results, out_dir, param_keys, best, heads, figures, metric)


MAX_BIAS_DIRECTIONS = 4  # swap directions the per-factor table shows signed errors for (N=2: 2)


def _judges_lines(results: list[dict]) -> list[str]:
  r = results[0]
  if "eval/judge_accuracy" not in r:
    return []
  panel = int(r.get("eval/judge_panel", 1))
  out = [f"Judges (fitted once on this dataset's training images, face region only"
         + (f"; {panel} fitted alike with different seeds, their readings averaged" if panel > 1 else "")
         + f"): identity accuracy {100 * r['eval/judge_accuracy']:.1f}% on held-out renderings."]
  if "eval/attr_mae_floor" in r:
    rows = [(n, r.get(f"eval/attr_floor/{n}"), r.get(f"eval/attr_guess/{n}")) for n in POSE_EXPRESSION]
    rows = [x for x in rows if x[1] is not None]
    scored = [n for n, f, g in rows if is_readable(f, g)]
    left = [n for n, f, g in rows if not is_readable(f, g)]
    out[0] += (f" Pose/expression floor {r['eval/attr_mae_floor']:.3f} std units against "
               f"{r['eval/attr_mae_guess']:.3f} for guessing the mean; `attr_mae` averages "
               + ", ".join(scored) + "."
               + (f" Left out (the judge's floor is above half of guessing): {', '.join(left)}." if left else "")
               + "".join(f" `{m}`: floor {r[f'eval/{m}_floor']:.3f} against {r[f'eval/{m}_guess']:.3f}."
                         for m in ("expr_mae", "pose_mae") if f"eval/{m}_floor" in r))
    err = lambda n, k="attr_err": np.mean([x.get(f"eval/{k}/{n}", np.nan) for x in results])  # noqa: E731
    # The signed error per direction (attr_bias/<factor>/<i>to<j>), where there are few directions:
    # one sign in a direction is a decoder drawing the factor more or less than the source shows.
    dirs = sorted({k.split("/")[3] for x in results for k in x
                   if k.startswith("eval/attr_bias/") and k.count("/") == 3})
    dirs = dirs if len(dirs) <= MAX_BIAS_DIRECTIONS else []
    out += ["", "The true face swaps, judged as the swaps are: the least error a perfect swap shows "
            "(above the floor where the judge reads a face in another identity's frame less well); "
            "the true swap's crop, pasted: its aligned crop pasted back into the source's frame as a "
            "decoded crop is; a perfect decoder j: j's own aligned crop at the source's pose and "
            "expression (what decoder j learns to draw), converted and judged as the swaps are. "
            "Its features sit where j's own crops have them, up to 1.5 px from where the true "
            "swap has them; the judges find a face's features where they are before reading it "
            "(`judges.locate`), so a perfect decoder j reads near the floor."
            + (" The signed columns: the judge's reading of the swaps minus the source's truth, per "
               "direction (`attr_bias`); one sign is a decoder drawing the factor more (+) or less (-) "
               "than the source shows, not misses both ways. The perfect decoder's own signed "
               "error beside them (`attr_bias_ideal`) is the part the judges show on a perfect swap "
               "of that direction, not the model's." if dirs else ""),
            "", "| factor | judge's floor | the true face swaps | the true swap's crop, pasted | "
            "a perfect decoder j | guessing the mean | runs' mean error |"
            + "".join(f" signed, {d} |" for d in dirs)
            + "".join(f" a perfect decoder j, signed, {d} |" for d in dirs),
            "|---|---|---|---|---|---|---|" + "---|" * (2 * len(dirs))]
    cell = lambda v: "-" if np.isnan(v) else f"{v:.2f}"  # noqa: E731 - runs evaluated before the column
    signed = lambda v: "-" if np.isnan(v) else f"{0.0 if abs(v) < 0.005 else v:+.2f}"  # noqa: E731 - no -0.00
    out += [f"| {n} | {f:.2f} | {cell(err(n, 'attr_err_truth'))} | {cell(err(n, 'attr_err_pasted'))} | "
            f"{cell(err(n, 'attr_err_ideal'))} | {g:.2f} | {cell(err(n))} |"
            + "".join(f" {signed(err(f'{n}/{d}', 'attr_bias'))} |" for d in dirs)
            + "".join(f" {signed(err(f'{n}/{d}', 'attr_bias_ideal'))} |" for d in dirs)
            for n, f, g in rows]
    if dirs and any(k.startswith("eval/attr_corr/") for k in r):
      out += ["", "How the swaps follow the source (`attr_corr`): per direction, the correlation over "
              "the held-out swaps between the judge's reading and the source's factor (the runs' "
              "mean), beside a perfect decoder j's (`attr_corr_ideal`). 1: they follow it; 0: they "
              "ignore it; below 0: they move the other way, which an error worse than guessing can "
              "hide. Its standard error: the bootstrap's (each direction's faces resampled "
              "together) of a run's mean over the directions, the runs' mean.", "",
              "| factor |" + "".join(f" runs, {d} |" for d in dirs) + " standard error |"
              + "".join(f" a perfect decoder j, {d} |" for d in dirs),
              "|---|" + "---|" * (2 * len(dirs) + 1)]
      out += [f"| {n} |" + "".join(f" {signed(err(f'{n}/{d}', 'attr_corr'))} |" for d in dirs)
              + f" {cell(err(f'{n}_se', 'attr_corr'))} |"
              + "".join(f" {signed(err(f'{n}/{d}', 'attr_corr_ideal'))} |" for d in dirs)
              for n, _, _ in rows]
      against = [f"{n} {d} ({v:+.2f})" for n in scored for d in dirs
                 if (v := err(f"{n}/{d}", "attr_corr")) < 0]
      if against:
        out += ["", "**The swaps move against the source** (a readable factor whose runs' mean "
                "correlation is below 0): " + ", ".join(against) + ". There the swaps' readings "
                "fall as the source's rise. A cause measured on the synthetic family 0's brows: "
                "the decoders repeat the source's change of light, and the pair's brows differ "
                "in polarity (light on darker skin against dark on lighter skin), so a rising "
                "brow is drawn falling."]
  return out


def _meaning_line(key: str) -> str:
  """`- `metric`: what it measures (better: lower)` from the registry."""
  m = meaning(key)
  better = dict(HEADLINE).get(key, "")
  return f"- `{key}`: {m.meaning if m else ''}" + (f" ({better} is better)" if better else "")


def swap_grid(results: list[dict], out_dir: str, per_identity: int = 3) -> tuple[str | None, list[str]]:
  """(swap_grid.png over the sweep's runs or None if none can be loaded, "run: why" for each run
  left out of it): inference.swap_rows."""
  rows, labels, left_out = inference.swap_rows(
      [os.path.join(out_dir, r["run"]) for r in results if "run" in r], per_identity)
  return (None if rows is None else plots.swap_grid(rows, labels, out_dir)), left_out


def eval_curves(results: list[dict], out_dir: str) -> dict:
  """run -> metric -> [(step, value)] from each run's metrics file, for plots.CURVES."""
  return {r["run"]: {m: tracking.eval_curve(os.path.join(out_dir, r["run"], METRICS), f"eval/{m}")
                     for m in plots.CURVES} for r in results if "run" in r}


def _write_full_report(results, out_dir, param_keys, best, heads, figures, metric):
  lines = [f"# Sweep report: {os.path.basename(os.path.abspath(out_dir))}", "",
           f"{len(results)} runs. Metrics on held-out faces at each run's last step:", ""]
  lines += [_meaning_line(k[5:]) for k in heads]
  if any(f"{k}_se" in r for k in heads for r in results):
    lines += ["", "Values are shown ± their standard error over the held-out images (a bootstrap, "
              "1000 resamples within each identity or pair): how much a run's number would move on "
              "other faces of the same people. The spread over seeds is at the end."]
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
  lines += [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in figures]
  grid, left_out = swap_grid(results, out_dir)
  if grid is None:
    lines += ["", "No swap grid: no run could be loaded (a checkpoint is needed)."]
  else:
    lines += ["", "## The same held-out faces, swapped by every run", "",
              "Top row: inputs (identity i; on synthetic faces three each: the held-out faces with "
              "the most closed eyes, the widest smile and the most open mouth); second row: the "
              "true face swap into the next identity "
              "(the input's frame with that identity's face); then one row per run: its converted "
              "swap of each input (decoded as the next identity, pasted back into the input's frame "
              "inside the face mask" + ("; runs with `eval.code_match=train`: its code matched to the "
                                        "next identity's code statistics first" if any(
                  r.get("config.eval.code_match") == "train" for r in results) else "")
              + ("; runs with `eval.tone=train`: its colour calibrated first" if any(
                  "eval/tone_shift" in r for r in results) else "") + ").", "", f"![swap grid]({grid})"]
  if left_out:
    lines += ["", "Left out of the swap grid:"] + [f"- `{w}`" for w in left_out]
  diag = [r for r in results if diagnose(r)]
  if diag:
    bar = ("what j's mean face scores converted into the source's frame (a decoder that ignores "
           "its input; the crop's outline may show it some pose)"
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
              "(encdec_jax/calibration.py: the colour shift each decoder puts on the other identities' "
              "training faces, `tone_shift`, taken off); `id_transfer_uncalibrated` is the judge "
              "on the same swaps without it. "
              "`blur_attr_mae`: the "
              "true face swaps blurred to each decoder's sharpness (`blur_sigma`, px), judged: if "
              "blur alone fails, the judge cannot separate blur from expression and no cause is "
              "named.", ""]
    lines += ["| run | " + " | ".join(DIAGNOSIS) + " | diagnosis |", "|" + "---|" * (len(DIAGNOSIS) + 2)]
    lines += [f"| {r['run']} | " + " | ".join(_fmt(r.get(f"eval/{m}", "")) for m in DIAGNOSIS)
              + f" | {diagnose(r)} |" for r in diag]
  curves = plots.plot_curves(eval_curves(results, out_dir), results, out_dir)
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
      cells = [(f"{r[m][0]:.4f} ± {r[m][1]:.4f}" + (f" (SE {r[m + '_se']:.4f})" if m + "_se" in r else ""))
               if m in r else "" for m in ms]
      lines.append(f"| {r['setting']} | {r['n']} | " + " | ".join(cells) + " |")
    lines += ["", "mean ± sample std over seeds: differences smaller than about twice the std "
              "are noise. (SE ...): the runs' mean standard error over the held-out images; where "
              "it is not well below the std, more held-out faces would sharpen the comparison."]
  else:
    lines += ["Every setting ran with one seed (`config.seed` is not a parameter of this sweep), so "
              "these numbers carry no error bars. Add `config.seed: {values: [0, 1]}` to the YAML "
              "to measure the spread."]
  lines += _differences_lines(results, out_dir, param_keys, metric, heads)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def _differences_lines(results, out_dir, param_keys, metric, heads) -> list[str]:
  """Every setting against the best by the sweep's metric, on the same held-out faces: the
  difference of their means over seeds, its error over the faces and over the seeds."""
  name = (metric or {}).get("name")
  groups = settings([r for r in results if r.get("status") != "failed"], param_keys)
  top = best_setting(results, param_keys, metric)
  if not name or len(groups) < 2 or top is None:
    return []
  samples = {}
  for r in results:
    got = read_samples(os.path.join(out_dir, r["run"]), r.get("step")) if "run" in r else None
    if got is None and r.get("status") != "failed":
      return []  # runs evaluated before per-image scores were kept: no paired comparison
    samples[r.get("run")] = got
  if sum(all(name in r for r in rs) for rs in groups.values()) < 2:
    return []
  best = top[0]
  runs = {k: [samples[r["run"]] for r in rs] for k, rs in groups.items()}
  ms = [m for m in heads if all(m[5:] in s for s in runs[best])]
  rows = []
  for k in groups:
    if k == best:
      continue
    cells = []
    for m in ms:
      d = paired_difference(runs[k], runs[best], m[5:])
      cells.append("" if d is None else f"{d[0]:+.4f} ± {d[1]:.4f} / {d[2]:.4f}")
    rows.append(f"| {k} | " + " | ".join(cells) + " |")
  return (["", "## Against the best setting, on the same faces", "",
           f"Each setting's mean over seeds minus the best's by `{name}` (**{best}**), ± the "
           "difference's standard error over the held-out faces (a bootstrap of the per-image "
           "differences: the settings were scored on the same faces, so this is tighter than either "
           "run's own error) / over the seeds. A difference beyond twice the larger is a result.", "",
           "| setting | " + " | ".join(m[5:] for m in ms) + " |", "|" + "---|" * (1 + len(ms))] + rows)


