"""Shared-encoder / per-identity models: blocks (blocks.py), architectures (archs.py), registry.

The interface every architecture exposes is documented in archs.py.
"""
from __future__ import annotations

import dataclasses

import jax

from encdec_jax.config import ConfigError, ModelConfig
from encdec_jax.models.archs import (ARCHITECTURES, DF, IAE, LIAE, DFaker, EncDec, Lightweight,  # noqa: F401 - re-exported
                                     Original, OriginalDecoder, OriginalEncoder)
from encdec_jax.models.blocks import (CONV_DIMENSIONS, CONV_IMPLS, KERNEL_INIT, UPSCALE_MODES, Conv, ConvBlock,
                                      ResidualBlock, Upscale, ch, conv_im2col, conv_taps_out, depth_to_space,
                                      pixel_norm, space_to_depth, strided_conv_s2d)


def split_output(y):
  """(..., 3 or 4) model output -> (rgb (..., 3), mask (..., 1) or None)."""
  return y[..., :3], (y[..., 3:4] if y.shape[-1] == 4 else None)


def check_model_config(cfg: ModelConfig) -> None:
  """Raises ConfigError naming the field and the valid values, or the architecture's constraint,
  if `cfg` cannot be built."""
  if cfg.arch not in ARCHITECTURES:
    raise ConfigError(f"config.model.arch={cfg.arch!r} is not an architecture; "
                      f"valid: {sorted(ARCHITECTURES)}")
  if cfg.conv_impl not in CONV_IMPLS + ("auto",):
    raise ConfigError(f"config.model.conv_impl={cfg.conv_impl!r}; valid: {sorted(CONV_IMPLS + ('auto',))}")
  if cfg.upscale not in UPSCALE_MODES:
    raise ConfigError(f"config.model.upscale={cfg.upscale!r}; valid: {sorted(UPSCALE_MODES)}")
  errs = ARCHITECTURES[cfg.arch].constraints(cfg)
  if errs:
    raise ConfigError("; ".join(errs))


def resolve_conv_impl(impl: str, platform: str | None = None) -> str:
  """conv_impl 'auto' -> the fast form on `platform` (default: the first device's): im2col on
  CPU, XLA's conv on GPU/TPU (the speeds of both: BENCHMARKS.md, "Conv forms"). The forms compute
  the same function with the same params."""
  if impl != "auto":
    return impl
  platform = platform or jax.devices()[0].platform
  return "im2col" if platform == "cpu" else "xla"


def build_model(cfg: ModelConfig, platform: str | None = None) -> EncDec:
  """The configured architecture, with conv_impl 'auto' resolved for `platform`."""
  check_model_config(cfg)
  cfg = dataclasses.replace(cfg, conv_impl=resolve_conv_impl(cfg.conv_impl, platform))
  return ARCHITECTURES[cfg.arch](cfg)


def output_scale(cfg: ModelConfig) -> int:
  """The decoders' output side over the input side: 2 for dfaker, 1 for the rest."""
  return ARCHITECTURES[cfg.arch].output_scale


def to_resolution(y, side: int):
  """Model outputs (..., H', W', C) -> (..., side, side, C): the bilinear, antialiased resize that
  brings an output_scale > 1 output (dfaker) back to the data's size for evaluation and swaps;
  the identity when already there."""
  if y.shape[-3] == side and y.shape[-2] == side:
    return y
  return jax.image.resize(y, y.shape[:-3] + (side, side, y.shape[-1]), "linear", antialias=True)


# Initialisation runs once; XLA:CPU's full optimisation of its threefry random bits costs ~10 s of
# compile even for a tiny model, against ~1 s at level 0 (same bits: integer ops). Also the swap
# grid's decodes (inference.apply_swap_quick) and the tests' value checks (tests/helpers.jit_quick).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def param_counts(params) -> dict[str, int]:
  """Parameters per top-level part (encoder, inter_*, decoder or decoders_0, ...)."""
  p = params.get("params", params)
  return {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in p.items()}
