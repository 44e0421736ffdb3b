"""Why a run's swaps fail, read from its evaluation scalars: cause 1, the model cannot draw the
expression (its reconstructions lose it too); cause 2, it draws it for its own identity but the
latent is not shared; or no verdict where the judge cannot tell. Also the spread over seeds, and
the difference between two settings measured on the same held-out faces."""
from __future__ import annotations

import numpy as np

from encdec_jax import bootstrap
from encdec_jax.data.render import EXPRESSION
from encdec_jax.judges import is_readable

# The columns of the report's diagnosis table.
COLUMNS = ("recon_attr_mae", "attr_mae", "blur_attr_mae", "recon_id_accuracy", "id_transfer",
           "id_transfer_tone_matched", "id_transfer_uncalibrated", "tone_shift", "probe_id_accuracy",
           "probe_attr_same", "probe_attr_cross", "swap_variation", "swap_tone_gap")
ONE_FACE = 0.25  # swap_variation below this: the decoders paint one face whatever the input


def threshold(r: dict) -> float:
  """Halfway between the judge's floor and what a decoder that ignores its input scores (j's mean
  face converted into the source's frame: the crop's outline may show it some pose); where that
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
  if expression and not any(is_readable(r[f"eval/attr_floor/{n}"], r[f"eval/attr_guess/{n}"])
                            for n in expression):
    # Pose alone can be read from the outline around a blank face: no verdict.
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


def settings(results: list[dict], param_keys: list[str]) -> dict[str, list[dict]]:
  """Runs grouped by their setting (every swept parameter but config.seed), in first-seen order;
  the key is the setting as the report names it."""
  others = [k for k in param_keys if k != "config.seed"]
  groups: dict = {}
  for r in results:
    key = ", ".join(f"{k.split('.')[-1]}={r.get(k)}" for k in others)
    groups.setdefault(key, []).append(r)
  return groups


def paired_difference(a: list[dict], b: list[dict], metric: str) -> tuple[float, float, float] | None:
  """Setting a's mean over seeds minus setting b's, on `metric`, from each run's per-image scores
  (workdir.read_samples: {name: [array per part]}): (difference, its standard error over the
  held-out faces, a bootstrap of the per-image differences, which shares the faces between the
  settings, and its error over seeds, sqrt(sd_a^2/n_a + sd_b^2/n_b), 0 with one seed each).
  None when a run lacks the metric or the settings were scored on different faces."""
  def per_part(runs):
    parts = [r.get(metric) for r in runs]
    if any(p is None for p in parts) or len({tuple(len(x) for x in p) for p in parts}) != 1:
      return None
    return [np.mean([p[k] for p in parts], 0) for k in range(len(parts[0]))]
  pa, pb = per_part(a), per_part(b)
  if pa is None or pb is None or [len(x) for x in pa] != [len(x) for x in pb]:
    return None
  diffs = [x - y for x, y in zip(pa, pb)]
  run_means = lambda runs: [np.mean([np.mean(x) for x in r[metric]]) for r in runs]  # noqa: E731
  var = lambda v: np.var(v, ddof=1) / len(v) if len(v) > 1 else 0.0  # noqa: E731
  return (float(np.mean([np.mean(d) for d in diffs])), bootstrap.standard_error(diffs),
          float(np.sqrt(var(run_means(a)) + var(run_means(b)))))


def seed_spread(results: list[dict], param_keys: list[str], metrics: list[str]) -> list[dict]:
  """Groups runs that differ only in config.seed: per group, n, the mean and std of each metric
  and, where the runs have it, the mean of its standard error over held-out images (`<m>_se`)
  (an empty list when no setting ran with more than one seed)."""
  out = []
  for setting, rs in settings(results, param_keys).items():
    if len(rs) < 2:
      continue
    row = {"setting": setting, "n": len(rs)}
    for m in metrics:
      v = [r[m] for r in rs if m in r]
      if v:
        row[m] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
      se = [r[f"{m}_se"] for r in rs if f"{m}_se" in r]
      if se:
        row[f"{m}_se"] = float(np.mean(se))
    out.append(row)
  return out
