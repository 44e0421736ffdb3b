"""Shared helper of the per-architecture config files: the Original config with another model."""
import ml_collections

from experiments.configs import original

VARIANTS = ("full", "small", "tiny")


def derive(name: str, arg: str | None, full: dict, small: dict | None = None,
           tiny: dict | None = None) -> ml_collections.ConfigDict:
  """original.py's `variant` config with model.arch=name and the given dotted overrides."""
  variant = arg or "full"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of {name}.py; valid: {', '.join(map(repr, VARIANTS))}")
  c = original.get_config(variant)
  c.model.arch = name
  over = dict(full)
  over.update({"full": {}, "small": small or {}, "tiny": tiny or {}}[variant])
  for key, value in over.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c
