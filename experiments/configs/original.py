"""Deepfakes 'Original': shared encoder, one decoder per identity, on synthetic faces.

  python -m experiments.train --config=experiments/configs/original.py --workdir=runs/original
  python -m experiments.train --config=experiments/configs/original.py:small --workdir=runs/small \
      --config.model.bottleneck=128 --config.loss=ssim:1.0,mae:1.0

Every field, its default and its meaning: encdec_jax/config.py (and the README's config table).
This file says only what its variants change. Variants (the part after the colon): "full"
(default: the published sizes, 64x64, batch 16 per identity), "small" (a laptop: 32x32, quarter
width, minutes on 2 CPU cores), "tiny" (tests).
"""
from encdec_jax import config as config_lib

VARIANTS = {
    "full": {},
    "small": {
        "model.width": 0.25, "model.bottleneck": 128, "data.resolution": 32,
        "data.train_per_identity": 600,
        "train.steps": 3000,           # faint eyes and mouths from ~3000 steps (2 CPU cores: ~3.5 min)
        "train.lr": 1e-3,
        # In the few thousand steps a laptop gives, the random warp slows the drawing of eyes and
        # mouths, and colour jitter of the targets makes the code carry colour (BENCHMARKS.md, "Recipe").
        "data.warp": False, "data.color_jitter": 0.0,
    },
    "tiny": {
        "loss": "mae:1.0",             # the cheapest to compile; the mask and SSIM paths have their own tests
        "mask.enabled": False,
        "model.width": 1 / 16, "model.bottleneck": 32,
        "model.conv_impl": "xla",      # 8x faster to compile; same function (tests/models_test.py)
        "data.resolution": 16, "data.train_per_identity": 64, "data.test_per_identity": 8,
        "train.steps": 20, "train.batch_size": 4, "train.lr": 1e-3, "train.log_every": 5,
        "train.preview_every": 10, "train.checkpoint_every": 10,
        "wandb.mode": "disabled",
    },
}


def get_config(arg: str | None = None):
  variant = arg or "full"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of original.py; valid: {', '.join(map(repr, VARIANTS))}")
  return config_lib.override(config_lib.default_config_dict(), VARIANTS[variant])
