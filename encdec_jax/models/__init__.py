"""Shared-encoder / per-identity models: blocks (blocks.py), architectures (archs.py), registry.

The interface every architecture exposes is documented in archs.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from encdec_jax.config import ConfigError, ModelConfig
from encdec_jax.models.archs import (ARCHITECTURES, DF, IAE, LIAE, DFaker, EncDec, Lightweight,
                                     Original, OriginalDecoder, OriginalEncoder)
from encdec_jax.models.blocks import (_DN, CONV_IMPLS, KERNEL_INIT, UPSCALE_MODES, Conv, ConvBlock,
                                      ResidualBlock, Upscale, ch, conv_im2col, conv_taps_out, depth_to_space,
                                      pixel_norm, space_to_depth, strided_conv_s2d)

_ch = ch


def split_output(y):
  """(..., 3 or 4) model output -> (rgb (..., 3), mask (..., 1) or None)."""
  return y[..., :3], (y[..., 3:4] if y.shape[-1] == 4 else None)


def check_model_config(cfg: ModelConfig) -> None:
  """Raises ConfigError naming the constraint if `cfg.arch` cannot be built as configured."""
  if cfg.arch not in ARCHITECTURES:
    raise ConfigError(f"config.model.arch={cfg.arch!r} is not an architecture; "
                      f"valid: {sorted(ARCHITECTURES)}")
  errs = ARCHITECTURES[cfg.arch].constraints(cfg)
  if errs:
    raise ConfigError("; ".join(errs))


def build_model(cfg: ModelConfig) -> EncDec:
  check_model_config(cfg)
  return ARCHITECTURES[cfg.arch](cfg)


def output_resolution(cfg: ModelConfig) -> int:
  return cfg.resolution * ARCHITECTURES[cfg.arch].output_scale


# Initialisation runs once; XLA:CPU's full optimisation of its threefry random bits costs ~10 s of
# compile even for a tiny model, against ~1 s at level 0 (same bits: integer ops).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_params(model, cfg: ModelConfig, rng):
  """model.init on an (N, 1, R, R, 3) dummy batch, compiled cheaply."""
  x = jnp.zeros((cfg.num_identities, 1, cfg.resolution, cfg.resolution, 3), jnp.float32)
  return jax.jit(model.init).lower(rng, x).compile(INIT_COMPILER_OPTIONS)(rng, x)


def param_counts(params) -> dict[str, int]:
  """Parameters per top-level part (encoder, inter_*, decoder or decoders_0, ...)."""
  p = params.get("params", params)
  return {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in p.items()}


def analytic_forward_flops(cfg: ModelConfig, count_padding: bool | None = None) -> float:
  """Multiply-adds x 2 of one image's forward pass through the Original encoder and one decoder
  (the cross-check of XLA's cost analysis in the benchmark; other architectures use the latter).

  XLA's own convs skip the taps that fall on zero padding (and so does its cost analysis);
  the im2col and s2d forms multiply the padding too, as does the PyTorch peer's count.
  `count_padding` defaults to what cfg.conv_impl computes."""
  if cfg.arch != "original":
    raise ValueError(f"analytic_forward_flops counts the 'original' architecture; got {cfg.arch!r}")
  if count_padding is None:
    count_padding = cfg.conv_impl != "xla"

  def _taps(n: int, k: int, stride: int, pad: int) -> int:
    out = (n + 2 * pad - k) // stride + 1
    if count_padding:
      return out * k
    return sum(1 for o in range(out) for t in range(k) if 0 <= o * stride - pad + t < n)

  w, r = cfg.width, cfg.resolution
  macs, s, cin = 0, r, 3
  for f in (128, 256, 512, 1024):
    macs += _taps(s, 5, 2, 2) ** 2 * cin * ch(f, w)
    s, cin = s // 2, ch(f, w)
  s0 = r // 16
  macs += s0 * s0 * cin * cfg.bottleneck + cfg.bottleneck * s0 * s0 * ch(1024, w)
  macs += _taps(s0, 3, 1, 1) ** 2 * ch(1024, w) * 4 * ch(512, w)
  s, cin = 2 * s0, ch(512, w)
  for f in (256, 128, 64):
    macs += _taps(s, 3, 1, 1) ** 2 * cin * 4 * ch(f, w)
    s, cin = 2 * s, ch(f, w)
  macs += _taps(s, 5, 1, 2) ** 2 * cin * (4 if cfg.learn_mask else 3)
  return 2.0 * macs
