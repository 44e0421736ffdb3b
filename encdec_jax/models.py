"""Shared-encoder / per-identity-decoder models and the ARCHITECTURES registry.

Every architecture is a linen Module built from a typed `ModelConfig` and exposes one interface:
  __call__(x_NxBxHxWxC) -> reconstructions, identity i decoded by decoder i;
  encode(x_BxHxWxC) -> latent;  decode(z, identity) -> image;
  swap(x_BxHxWxC, to) -> x encoded, decoded as identity `to`;
  decode_all(x_BxHxWxC) -> (N, B, H, W, C), every decoder applied to the same inputs.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.config import ModelConfig

_DN = ("NHWC", "HWIO", "NHWC")


def space_to_depth(x_BxHxWxC, r: int = 2):
  b, h, w, c = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // r, w // r, r * r * c)


def depth_to_space(x_BxHxWxC, r: int = 2):
  """Pixel shuffle: channels (r, r, C) become an r x r block of pixels."""
  b, h, w, c = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(b, h, w, r, r, c // (r * r)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * r, w * r, c // (r * r))


def strided_conv_s2d(x_BxHxWxC, kernel_KxKxCxO, pad: int):
  """A stride-2 conv computed as space-to-depth + a VALID stride-1 conv.

  Same function and same (K, K, C, O) parameter as the direct strided conv. It exists because
  XLA:CPU rewrites the input gradient of a 5x5 stride-2 conv whose kernel is larger than its
  output into a slow loop (shared/STACK.md); this form has no such conv.
  """
  k = kernel_KxKxCxO.shape[0]
  b, h, w, c = x_BxHxWxC.shape
  o = kernel_KxKxCxO.shape[-1]
  k2 = -(-k // 2)  # taps per phase
  out_h, out_w = (h + 2 * pad - k) // 2 + 1, (w + 2 * pad - k) // 2 + 1
  # Pad so the padded input holds exactly (out + k2 - 1) blocks of 2.
  hp, wp = 2 * (out_h + k2 - 1), 2 * (out_w + k2 - 1)
  x = jnp.pad(x_BxHxWxC, ((0, 0), (pad, hp - h - pad), (pad, wp - w - pad), (0, 0)))
  x = space_to_depth(x, 2)
  kern = jnp.pad(kernel_KxKxCxO, ((0, 2 * k2 - k), (0, 2 * k2 - k), (0, 0), (0, 0)))
  kern = kern.reshape(k2, 2, k2, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(k2, k2, 4 * c, o)
  return jax.lax.conv_general_dilated(x, kern, (1, 1), "VALID", dimension_numbers=_DN)


class StridedConv(nn.Module):
  """K x K conv, stride 2, padding K // 2 on every side (as the reference PyTorch trainers)."""
  features: int
  kernel: int = 5
  impl: str = "s2d"  # "s2d" or "direct": same function, different XLA program
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel, self.kernel, cin, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    pad = self.kernel // 2
    impl = self.impl
    if impl == "auto":  # s2d only where the kernel is larger than the output (the XLA:CPU trap)
      impl = "s2d" if x.shape[1] // 2 < self.kernel else "direct"
    if impl == "s2d":
      y = strided_conv_s2d(x, kernel, pad)
    elif impl == "direct":
      y = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((pad, pad), (pad, pad)),
                                       dimension_numbers=_DN)
    else:
      raise ValueError(f"StridedConv.impl={self.impl!r}; valid: 'auto', 's2d', 'direct'")
    return y + bias.astype(self.dtype)


class ConvBlock(nn.Module):
  """Strided conv + LeakyReLU(0.1): the Deepfakes downscale block."""
  features: int
  impl: str = "s2d"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.leaky_relu(StridedConv(self.features, impl=self.impl, dtype=self.dtype)(x), 0.1)


class Upscale(nn.Module):
  """3x3 conv to 4x channels, LeakyReLU(0.1), pixel shuffle: doubles H and W."""
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features * 4, (3, 3), padding="SAME", dtype=self.dtype,
                param_dtype=jnp.float32)(x)
    return depth_to_space(nn.leaky_relu(x, 0.1), 2)


def _ch(c: int, width: float) -> int:
  return max(1, int(round(c * width)))


class OriginalEncoder(nn.Module):
  """Four 5x5 stride-2 convs, Dense(bottleneck), Dense(s*s*1024), one upscale to 2s x 2s x 512."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxHxWxC):
    c, w = self.cfg, self.cfg.width
    x = x_BxHxWxC
    for f in (128, 256, 512, 1024):
      x = ConvBlock(_ch(f, w), impl=c.conv_impl, dtype=c.compute_dtype)(x)
    x = x.reshape(x.shape[0], -1)
    z = nn.Dense(c.bottleneck, dtype=c.compute_dtype, param_dtype=jnp.float32, name="bottleneck")(x)
    s = c.resolution // 16
    x = nn.Dense(s * s * _ch(1024, w), dtype=c.compute_dtype, param_dtype=jnp.float32)(z)
    x = x.reshape(x.shape[0], s, s, _ch(1024, w))
    return Upscale(_ch(512, w), dtype=c.compute_dtype)(x)


class OriginalDecoder(nn.Module):
  """Three upscales (256, 128, 64) and a 5x5 conv to RGB with a sigmoid, computed in float32."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    c, w = self.cfg, self.cfg.width
    for f in (256, 128, 64):
      x = Upscale(_ch(f, w), dtype=c.compute_dtype)(x)
    x = nn.Conv(3, (5, 5), padding="SAME", dtype=jnp.float32, param_dtype=jnp.float32,
                name="to_rgb")(x.astype(jnp.float32))
    return nn.sigmoid(x)


class Original(nn.Module):
  """Deepfakes 'Original': one shared encoder, one decoder per identity."""
  cfg: ModelConfig

  def setup(self):
    self.encoder = OriginalEncoder(self.cfg)
    self.decoders = [OriginalDecoder(self.cfg) for _ in range(self.cfg.num_identities)]

  def encode(self, x_BxHxWxC):
    return self.encoder(x_BxHxWxC)

  def decode(self, z, identity: int):
    return self.decoders[identity](z)

  def __call__(self, x_NxBxHxWxC):
    n, b = x_NxBxHxWxC.shape[:2]
    z = self.encode(x_NxBxHxWxC.reshape((n * b,) + x_NxBxHxWxC.shape[2:]))
    z = z.reshape((n, b) + z.shape[1:])
    return jnp.stack([self.decode(z[i], i) for i in range(n)])

  def swap(self, x_BxHxWxC, to: int):
    return self.decode(self.encode(x_BxHxWxC), to)

  def decode_all(self, x_BxHxWxC):
    z = self.encode(x_BxHxWxC)
    return jnp.stack([self.decode(z, j) for j in range(self.cfg.num_identities)])


ARCHITECTURES: dict[str, type[nn.Module]] = {"original": Original}


def build_model(cfg: ModelConfig) -> nn.Module:
  if cfg.arch not in ARCHITECTURES:
    raise ValueError(f"model.arch={cfg.arch!r} is not an architecture; valid: {sorted(ARCHITECTURES)}")
  return ARCHITECTURES[cfg.arch](cfg)


def param_counts(params) -> dict[str, int]:
  """Parameters per top-level part (encoder, decoders_0, ...)."""
  p = params.get("params", params)
  return {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in p.items()}


def analytic_forward_flops(cfg: ModelConfig) -> float:
  """Multiply-adds x 2 of one image's forward pass through encoder + one decoder (convs, dense)."""
  w, r = cfg.width, cfg.resolution
  macs, s, cin = 0, r, 3
  for f in (128, 256, 512, 1024):
    s //= 2
    macs += s * s * _ch(f, w) * 25 * cin
    cin = _ch(f, w)
  s0 = r // 16
  macs += s0 * s0 * cin * cfg.bottleneck + cfg.bottleneck * s0 * s0 * _ch(1024, w)
  macs += s0 * s0 * _ch(1024, w) * 9 * 4 * _ch(512, w)
  s, cin = 2 * s0, _ch(512, w)
  for f in (256, 128, 64):
    macs += s * s * cin * 9 * 4 * _ch(f, w)
    s, cin = 2 * s, _ch(f, w)
  macs += s * s * cin * 25 * 3
  return 2.0 * macs


