"""Why a run's swaps fail, read from its evaluation scalars: cause 1, the model cannot draw the
expression (its reconstructions lose it too); cause 2, it draws it for its own identity but the
latent is not shared; or no verdict where the judge cannot tell. Also the spread over seeds."""
from __future__ import annotations

import numpy as np

from encdec_jax.data.render import EXPRESSION
from encdec_jax.judges import is_readable

# The columns of the report's diagnosis table.
COLUMNS = ("recon_attr_mae", "attr_mae", "blur_attr_mae", "recon_id_accuracy", "id_transfer",
           "id_transfer_tone_matched", "id_transfer_uncalibrated", "tone_shift", "probe_id_accuracy",
           "probe_attr_same", "probe_attr_cross", "swap_variation", "swap_tone_gap")
ONE_FACE = 0.25  # swap_variation below this: the decoders paint one face whatever the input


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
  if expression and not any(is_readable(r[f"eval/attr_floor/{n}"], r[f"eval/attr_guess/{n}"])
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


def seed_spread(results: list[dict], param_keys: list[str], metrics: list[str]) -> list[dict]:
  """Groups runs that differ only in config.seed: per group, n, the mean and std of each metric
  and, where the runs have it, the mean of its standard error over held-out images (`<m>_se`)
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
      se = [r[f"{m}_se"] for r in rs if f"{m}_se" in r]
      if se:
        row[f"{m}_se"] = float(np.mean(se))
    out.append(row)
  return out
