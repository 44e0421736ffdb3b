"""Shared helper of the per-architecture config files: the Original config with another model."""
import ml_collections

from encdec_jax import config as config_lib
from experiments.configs import original

VARIANTS = tuple(original.VARIANTS)


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
  return config_lib.override(c, over)


# DeepFaceLab SAEHD defaults (df, liae): published 128 px, ae_dims 256 (= model.bottleneck),
# e_dims 64, d_dims 64; and their small and tiny variants.
DFL_FULL = {"model.bottleneck": 256, "model.e_dims": 64, "model.d_dims": 64,
            "data.resolution": 128, "train.batch_size": 8}
DFL_SMALL = {"model.bottleneck": 64, "model.width": 0.25, "data.resolution": 32,
             "train.batch_size": 16}
DFL_TINY = {"model.bottleneck": 32, "model.width": 1 / 16, "data.resolution": 16,
            "train.batch_size": 4, "model.d_dims": 32}
