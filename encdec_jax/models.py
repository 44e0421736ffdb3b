"""Shared-encoder / per-identity-decoder models and the ARCHITECTURES registry.

Every architecture is a linen Module built from a typed `ModelConfig` and exposes one interface:
  __call__(x_NxBxHxWxC) -> reconstructions, identity i decoded by decoder i;
  encode(x_BxHxWxC) -> latent;  decode(z, identity) -> image;
  swap(x_BxHxWxC, to) -> x encoded, decoded as identity `to`;
  decode_all(x_BxHxWxC) -> (N, B, H, W, C), every decoder applied to the same inputs.
Outputs have 3 channels (RGB in [0, 1]), or 4 with cfg.learn_mask: channel 3 is the decoder's
predicted face mask, in [0, 1]; `split_output` separates them.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.config import ModelConfig

_DN = ("NHWC", "HWIO", "NHWC")
# He-uniform, as faceswap's Keras blocks: with PyTorch's default U(+-1/sqrt(fan_in)) activations
# shrink layer by layer and the tiny test model barely moves in 300 steps (0.34 -> 0.29 loss,
# against 0.34 -> 0.20 with He; see the closing note of the foundation issue).
KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")


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


def conv_im2col(x_BxHxWxC, kernel_KxKxCxO, stride: int, pad: int):
  """A conv as one matrix product: the K*K shifted (strided) views of the padded input are
  concatenated on channels and multiplied by the (K*K*C, O) kernel. Its gradients are a matrix
  product and pad/add of slices, which XLA:CPU runs near its matmul speed; XLA's own conv
  gradients hit slow paths in this model (shared/STACK.md, BENCHMARKS.md)."""
  k = kernel_KxKxCxO.shape[0]
  b, h, w, c = x_BxHxWxC.shape
  oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  x = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  cols = [x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
          for i in range(k) for j in range(k)]
  patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
  y = jnp.dot(patches.reshape(b * oh * ow, k * k * c), kernel_KxKxCxO.reshape(k * k * c, -1))
  return y.reshape(b, oh, ow, -1)


CONV_IMPLS = ("im2col", "xla", "s2d")


class Conv(nn.Module):
  """K x K conv with padding K // 2 on every side (as the reference PyTorch trainers), any stride.

  `impl` chooses the XLA program, not the function: "im2col" (one matmul), "xla"
  (lax.conv_general_dilated), "s2d" (stride 2 as space-to-depth + a VALID conv; "xla" at stride 1).
  The parameters are the same (K, K, C, O) kernel and (O,) bias in every case.
  """
  features: int
  kernel: int = 3
  stride: int = 1
  impl: str = "im2col"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    kernel = self.param("kernel", KERNEL_INIT,
                        (self.kernel, self.kernel, cin, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    pad = self.kernel // 2
    if self.impl == "im2col":
      y = conv_im2col(x, kernel, self.stride, pad)
    elif self.impl == "s2d" and self.stride == 2:
      y = strided_conv_s2d(x, kernel, pad)
    elif self.impl in ("xla", "s2d"):
      y = jax.lax.conv_general_dilated(x, kernel, (self.stride,) * 2, ((pad, pad), (pad, pad)),
                                       dimension_numbers=_DN)
    else:
      raise ValueError(f"Conv.impl={self.impl!r}; valid: {list(CONV_IMPLS)}")
    return y + bias.astype(self.dtype)


class ConvBlock(nn.Module):
  """Strided conv + LeakyReLU(0.1): the Deepfakes downscale block."""
  features: int
  impl: str = "im2col"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.leaky_relu(Conv(self.features, 5, 2, impl=self.impl, dtype=self.dtype)(x), 0.1)


class Upscale(nn.Module):
  """3x3 conv to 4x channels, LeakyReLU(0.1), pixel shuffle: doubles H and W."""
  features: int
  impl: str = "im2col"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = Conv(self.features * 4, 3, 1, impl=self.impl, dtype=self.dtype)(x)
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
    z = nn.Dense(c.bottleneck, dtype=c.compute_dtype, param_dtype=jnp.float32,
                 kernel_init=KERNEL_INIT, name="bottleneck")(x)
    s = c.resolution // 16
    x = nn.Dense(s * s * _ch(1024, w), dtype=c.compute_dtype, param_dtype=jnp.float32,
                 kernel_init=KERNEL_INIT)(z)
    x = x.reshape(x.shape[0], s, s, _ch(1024, w))
    return Upscale(_ch(512, w), impl=c.conv_impl, dtype=c.compute_dtype)(x)


class OriginalDecoder(nn.Module):
  """Three upscales (256, 128, 64) and a 5x5 conv to RGB with a sigmoid, computed in float32."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    c, w = self.cfg, self.cfg.width
    for f in (256, 128, 64):
      x = Upscale(_ch(f, w), impl=c.conv_impl, dtype=c.compute_dtype)(x)
    out = 4 if c.learn_mask else 3
    x = Conv(out, 5, 1, impl=c.conv_impl, dtype=jnp.float32, name="to_rgb")(x.astype(jnp.float32))
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


def split_output(y):
  """(..., 3 or 4) model output -> (rgb (..., 3), mask (..., 1) or None)."""
  return y[..., :3], (y[..., 3:4] if y.shape[-1] == 4 else None)


def build_model(cfg: ModelConfig) -> nn.Module:
  if cfg.arch not in ARCHITECTURES:
    raise ValueError(f"model.arch={cfg.arch!r} is not an architecture; valid: {sorted(ARCHITECTURES)}")
  return ARCHITECTURES[cfg.arch](cfg)


# Initialisation runs once; XLA:CPU's full optimisation of its threefry random bits costs ~10 s of
# compile even for a tiny model, against ~1 s at level 0 (same bits: integer ops).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_params(model: nn.Module, cfg: ModelConfig, rng):
  """model.init on an (N, 1, R, R, 3) dummy batch, compiled cheaply."""
  x = jnp.zeros((cfg.num_identities, 1, cfg.resolution, cfg.resolution, 3), jnp.float32)
  return jax.jit(model.init).lower(rng, x).compile(INIT_COMPILER_OPTIONS)(rng, x)


def param_counts(params) -> dict[str, int]:
  """Parameters per top-level part (encoder, decoders_0, ...)."""
  p = params.get("params", params)
  return {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in p.items()}


def analytic_forward_flops(cfg: ModelConfig, count_padding: bool | None = None) -> float:
  """Multiply-adds x 2 of one image's forward pass through the encoder and one decoder.

  XLA's own convs skip the taps that fall on zero padding (and so does its cost analysis);
  the im2col and s2d forms multiply the padding too, as does the PyTorch peer's count.
  `count_padding` defaults to what cfg.conv_impl computes."""
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
    macs += _taps(s, 5, 2, 2) ** 2 * cin * _ch(f, w)
    s, cin = s // 2, _ch(f, w)
  s0 = r // 16
  macs += s0 * s0 * cin * cfg.bottleneck + cfg.bottleneck * s0 * s0 * _ch(1024, w)
  macs += _taps(s0, 3, 1, 1) ** 2 * _ch(1024, w) * 4 * _ch(512, w)
  s, cin = 2 * s0, _ch(512, w)
  for f in (256, 128, 64):
    macs += _taps(s, 3, 1, 1) ** 2 * cin * 4 * _ch(f, w)
    s, cin = 2 * s, _ch(f, w)
  macs += _taps(s, 5, 1, 2) ** 2 * cin * 3
  return 2.0 * macs
