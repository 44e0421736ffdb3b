"""The LOSSES registry, the loss spec that combines them, and face-mask weighting.

Every entry maps (pred, target, mask=None) -> per-example loss (B,), for images in [0, 1] shaped
(B, H, W, C), computed in float32 whatever the input dtype. A mask of shape (B, H, W, 1 or C)
weights the per-pixel loss of spatial losses (a weighted mean) and multiplies the inputs of the
others (their value then ignores pixels outside the mask).

Spec grammar (config.loss):  term ("," term)*   with   term = NAME ["(" k=v ("," k=v)* ")"] [":" WEIGHT]
  "ssim:1.0,mse:0.5"   "robust(alpha=0,scale=0.05):1,ms_ssim"   "smooth_l1(delta=0.02)"
A missing weight is 1. Weights must be > 0; parameter names are each loss's keyword arguments.
LATENT_LOSSES (losses/latent.py) are terms on the shared latent, not on images, and SWAP_LOSSES
(losses/swap.py) terms on the model's swaps (identity i's codes decoded by j); both go in the same
spec beside at least one image loss: "ssim,mae,latent_match:1", "ssim,mae,swap_tone".
ADVERSARY_LOSSES (losses/latent.py) train the model's identity critic against the encoder
("ssim,mae,identity_adversary:0.1", with config.model.critic_width > 0); the swap term
swap_realism trains the model's realism critic against the decoders (config.model.realism_width > 0).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Callable

import jax
import jax.numpy as jnp

from encdec_jax.losses.frequency import ffl, laploss
from encdec_jax.losses.latent import ADVERSARY_LOSSES, LATENT_LOSSES
from encdec_jax.losses.pixel import (l_inf_norm, logcosh, mae, mse, pixel_gradient_diff, robust,
                                     smooth_l1)
from encdec_jax.losses.structural import gmsd, ms_ssim, ssim
from encdec_jax.losses.swap import REALISM, SWAP_LOSSES


def _mask_inputs(fn):
  """For losses with no per-pixel form: mask the images, not the loss."""
  @functools.wraps(fn)
  def wrapped(pred, target, mask=None, **kw):
    if mask is not None:
      m = jnp.minimum(jnp.asarray(mask, jnp.float32), 1.0)
      pred, target = jnp.asarray(pred, jnp.float32) * m, jnp.asarray(target, jnp.float32) * m
    return fn(pred, target, **kw)
  wrapped.spatial = False
  return wrapped


LOSSES: dict[str, Callable] = {
    "mae": mae, "mse": mse, "logcosh": logcosh, "smooth_l1": smooth_l1, "robust": robust,
    "l_inf_norm": l_inf_norm, "pixel_gradient_diff": pixel_gradient_diff, "ssim": _mask_inputs(ssim),
    "ms_ssim": _mask_inputs(ms_ssim), "gmsd": _mask_inputs(gmsd), "ffl": _mask_inputs(ffl),
    "laploss": _mask_inputs(laploss),
}
# Terms on the shared latent (losses/latent.py): codes (N, B, ...) -> scalar. A spec may mix both.
# Terms on the swap path (losses/swap.py): the model's swaps -> scalar.
# Terms that train the model's identity critic against the encoder (losses/latent.py).
ALL_LOSSES: dict[str, Callable] = {**LOSSES, **LATENT_LOSSES, **SWAP_LOSSES, **ADVERSARY_LOSSES}


def is_latent(name: str) -> bool:
  return name in LATENT_LOSSES


def is_adversary(name: str) -> bool:
  return name in ADVERSARY_LOSSES


def is_swap(name: str) -> bool:
  return name in SWAP_LOSSES


def is_image(name: str) -> bool:
  return name in LOSSES


@dataclasses.dataclass(frozen=True)
class LossTerm:
  name: str
  weight: float = 1.0
  params: tuple = ()  # ((name, value), ...)

  @property
  def key(self) -> str:
    """The term's name in metrics and loss parts: its name, with its parameters if it has any
    ('ssim', 'swap_tone(encoder=0)'), so that two forms of one loss in a group stay apart."""
    return self.name + (f"({','.join(f'{k}={v}' for k, v in self.params)})" if self.params else "")

  def __call__(self, pred, target, mask=None):
    return LOSSES[self.name](pred, target, mask, **dict(self.params))

  def on_codes(self, z_NxBx___):
    """A latent term's value on the codes of a batch."""
    return LATENT_LOSSES[self.name](z_NxBx___, **dict(self.params))

  def on_swaps(self, pair):
    """A swap term's value on one pair's swaps (a losses.swap.SwapPair)."""
    return SWAP_LOSSES[self.name](pair, **dict(self.params))


class LossSpecError(ValueError):
  pass


def loss_params(name: str) -> dict[str, object]:
  """A loss's own parameters and their defaults."""
  fn = inspect.unwrap(ALL_LOSSES[name])
  return {p.name: p.default for p in inspect.signature(fn).parameters.values()
          if p.kind == inspect.Parameter.KEYWORD_ONLY}


def _split_top(spec: str) -> list[str]:
  parts, depth, cur = [], 0, ""
  for ch in spec:
    depth += (ch == "(") - (ch == ")")
    if depth < 0:
      raise LossSpecError(f"unbalanced ')' in loss spec {spec!r}")
    if ch == "," and depth == 0:
      parts.append(cur)
      cur = ""
    else:
      cur += ch
  if depth:
    raise LossSpecError(f"unbalanced '(' in loss spec {spec!r}")
  return parts + [cur]


_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*(?::\s*(.*?))?\s*$")


def _number(text: str, what: str) -> float:
  try:
    v = float(text)
  except ValueError:
    raise LossSpecError(f"{what}: {text!r} is not a number") from None
  return v


def parse_loss_spec(spec: str) -> tuple[LossTerm, ...]:
  """'ssim:1.0,robust(alpha=0):0.5' -> (LossTerm('ssim', 1.0), LossTerm('robust', 0.5, ...))."""
  if not isinstance(spec, str) or not spec.strip():
    raise LossSpecError(f"loss spec must be a non-empty string like 'ssim:1.0,mae:1.0', got {spec!r}")
  terms: list[LossTerm] = []
  for part in _split_top(spec):
    m = _TERM.match(part)
    if not m:
      raise LossSpecError(f"cannot read term {part.strip()!r} of loss spec {spec!r}; "
                          "expected NAME[(k=v,...)][:WEIGHT]")
    name, params_text, weight_text = m.groups()
    if name not in ALL_LOSSES:
      raise LossSpecError(f"unknown loss {name!r} in spec {spec!r}; valid names: {sorted(ALL_LOSSES)}")
    w = 1.0 if weight_text is None else _number(weight_text, f"weight of loss {name!r} in {spec!r}")
    if not (w > 0 and w != float("inf")):
      raise LossSpecError(f"loss {name!r} in spec {spec!r} has weight {w}; weights must be finite and > 0")
    valid = loss_params(name)
    params = {}
    for kv in filter(str.strip, (params_text or "").split(",")):
      k, eq, v = kv.partition("=")
      k = k.strip()
      if not eq or k not in valid:
        raise LossSpecError(f"loss {name!r} in spec {spec!r}: bad parameter {kv.strip()!r}; "
                            f"valid parameters: {sorted(valid) or 'none'}")
      default = valid[k]
      val = _number(v.strip(), f"parameter {k} of loss {name!r}")
      params[k] = int(val) if isinstance(default, int) and val == int(val) else val
    _check_params(name, params)
    if any(t.name == name for t in terms):
      raise LossSpecError(f"loss {name!r} appears twice in spec {spec!r}")
    terms.append(LossTerm(name, w, tuple(sorted(params.items()))))
  if not any(is_image(t.name) for t in terms):
    raise LossSpecError(f"loss spec {spec!r} has no image loss (only terms on the latent or the "
                        f"swaps: {', '.join(sorted({**LATENT_LOSSES, **SWAP_LOSSES, **ADVERSARY_LOSSES}))}); "
                        f"add one, e.g. 'mae,{spec}'")
  return tuple(terms)


def _check_params(name, p):
  bad = {"smooth_l1": lambda: p.get("delta", 1) <= 0, "robust": lambda: p.get("scale", 1) <= 0,
         "ms_ssim": lambda: not 1 <= p.get("scales", 5) <= 5, "ffl": lambda: p.get("alpha", 1) < 0,
         "laploss": lambda: p.get("levels", 1) < 1, "ssim": lambda: p.get("window", 11) < 1,
         "latent_match": lambda: p.get("spread", 1) < 0,
         "swap_tone": lambda: (p.get("encoder", 1) not in (0, 1) or p.get("common", 0) not in (0, 1)
                               or p.get("skin", 0) not in (0, 1) or p.get("common", 0) + p.get("skin", 0) > 1),
         "swap_cycle": lambda: p.get("encoder", 1) not in (0, 1),
         "swap_structure": lambda: (p.get("encoder", 1) not in (0, 1) or p.get("eyes", 0) not in (0, 1)
                                    or not 0 <= p.get("chroma", 0) <= 1),
         "swap_mean": lambda: p.get("encoder", 1) not in (0, 1) or p.get("paired", 0) not in (0, 1),
         "swap_realism": lambda: p.get("encoder", 1) not in (0, 1)}
  if name in bad and bad[name]():
    raise LossSpecError(f"loss {name!r}: parameters {p} out of range (see the loss table in the README)")


def mask_weights(masks_BxHxWx3, eye_multiplier: float, mouth_multiplier: float):
  """(face, eyes, mouth) coverage -> one weight map (B, H, W, 1): the face, with the eye and
  mouth regions counted eye_multiplier and mouth_multiplier times."""
  m = jnp.asarray(masks_BxHxWx3, jnp.float32)
  face, eyes, mouth = m[..., 0:1], m[..., 1:2], m[..., 2:3]
  return face * (1.0 + (eye_multiplier - 1.0) * eyes + (mouth_multiplier - 1.0) * mouth)


def _check_images(pred, target):
  if pred.shape != target.shape or pred.ndim != 4:
    raise ValueError(f"loss inputs must both be (B, H, W, C); got pred {pred.shape}, target {target.shape}")
  for name, x in (("pred", pred), ("target", target)):
    if not isinstance(x, jax.core.Tracer):  # values are only known outside jit
      lo, hi = float(jnp.min(x)), float(jnp.max(x))
      if lo < 0 or hi > 1:
        raise ValueError(f"loss input {name} has values in [{lo:.3g}, {hi:.3g}]; images must be in [0, 1]")


def combined_loss(terms: tuple[LossTerm, ...], pred, target, mask=None):
  """Weighted sum of the terms, per example: returns (total (B,), {term key: (B,)})."""
  _check_images(pred, target)
  parts = {t.key: t(pred, target, mask) for t in terms}
  total = sum(t.weight * parts[t.key] for t in terms)
  return total, parts
