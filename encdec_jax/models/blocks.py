"""The blocks every architecture is composed from (encdec_jax/models/archs.py).

Convolutions (three XLA formulations of one function), the strided conv block, the upscale block
(pixel shuffle, or nearest-neighbour resize + conv), the residual block, the dense bottleneck
(optional pixel norm, as DeepFaceLab's "-u") and the output head (sigmoid, float32, RGB and an
optional mask channel). Functions that create parameters (`dense_bottleneck`, `output_head`) run
inside the caller's scope, so their parameters sit directly in the calling module.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# He-uniform, as faceswap's Keras blocks: with PyTorch's default U(+-1/sqrt(fan_in)) activations
# shrink layer by layer.
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
  output into a slow loop (7 of 17 s of a step); this form has no such conv.
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
  return jax.lax.conv_general_dilated(x, kern, (1, 1), "VALID", dimension_numbers=CONV_DIMENSIONS)


def conv_im2col(x_BxHxWxC, kernel_KxKxCxO, stride: int, pad: int):
  """A conv as one matrix product: the K*K shifted (strided) views of the padded input are
  concatenated on channels and multiplied by the (K*K*C, O) kernel. Its gradients are a matrix
  product and pad/add of slices, which XLA:CPU runs near its matmul speed; XLA's own conv
  gradients hit slow paths in this model (BENCHMARKS.md, "Conv forms").

  The patches hold K*K*C values per output pixel. When a stride-1 conv has fewer output than
  input channels (an RGB head: 64 -> 3 at 5x5 builds 1600 values per pixel, 420 MB for one
  decoder's batch of 16 at 64x64), `conv_taps_out` multiplies first and shifts the K*K*O
  products instead: the same function with K*K*O values per pixel."""
  k = kernel_KxKxCxO.shape[0]
  b, h, w, c = x_BxHxWxC.shape
  if stride == 1 and k > 1 and kernel_KxKxCxO.shape[-1] < c:
    return conv_taps_out(x_BxHxWxC, kernel_KxKxCxO, pad)
  oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  x = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  cols = [x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
          for i in range(k) for j in range(k)]
  patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
  y = jnp.dot(patches.reshape(b * oh * ow, k * k * c), kernel_KxKxCxO.reshape(k * k * c, -1))
  return y.reshape(b, oh, ow, -1)


def conv_taps_out(x_BxHxWxC, kernel_KxKxCxO, pad: int):
  """A stride-1 conv as one matrix product followed by a sum of shifted slices: every pixel is
  multiplied by all K*K taps at once, (B*H*W, C) @ (C, K*K*O), and output pixel (i, j) adds tap
  (di, dj)'s product from input pixel (i + di - pad, j + dj - pad). Cheaper than im2col when
  O < C (what it builds and its gradient reads are K*K*O values per pixel, not K*K*C)."""
  k, _, c, o = kernel_KxKxCxO.shape
  b, h, w, _ = x_BxHxWxC.shape
  oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
  wmat = kernel_KxKxCxO.transpose(2, 0, 1, 3).reshape(c, k * k * o)
  y = jnp.dot(x_BxHxWxC.reshape(b * h * w, c), wmat).reshape(b, h, w, k * k, o)
  y = jnp.pad(y, ((0, 0), (pad, pad), (pad, pad), (0, 0), (0, 0)))
  # out[i, j] = sum over taps of x[i + di - pad, j + dj - pad] @ W[di, dj] = y_padded[i + di, j + dj, tap]
  out = None
  for di in range(k):
    for dj in range(k):
      t = y[:, di:di + oh, dj:dj + ow, di * k + dj]
      out = t if out is None else out + t
  return out


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
                                       dimension_numbers=CONV_DIMENSIONS)
    else:
      raise ValueError(f"Conv.impl={self.impl!r}; valid: {list(CONV_IMPLS)}")
    return y + bias.astype(self.dtype)


class ConvBlock(nn.Module):
  """Strided 5x5 conv + LeakyReLU: the Deepfakes downscale block."""
  features: int
  impl: str = "im2col"
  dtype: jnp.dtype = jnp.float32
  slope: float = 0.1  # of the LeakyReLU

  @nn.compact
  def __call__(self, x):
    return nn.leaky_relu(Conv(self.features, 5, 2, impl=self.impl, dtype=self.dtype)(x), self.slope)


UPSCALE_MODES = ("shuffle", "resize")


class Upscale(nn.Module):
  """Doubles H and W. "shuffle": 3x3 conv to 4x channels, LeakyReLU(0.1), pixel shuffle (Deepfakes,
  DeepFaceLab). "resize": nearest-neighbour 2x, then a 3x3 conv, LeakyReLU(0.1): the same FLOPs (4x the
  pixels at a quarter of the output channels) and no pixel-shuffle checkerboard artefacts."""
  features: int
  impl: str = "im2col"
  dtype: jnp.dtype = jnp.float32
  mode: str = "shuffle"

  @nn.compact
  def __call__(self, x):
    if self.mode == "shuffle":
      x = Conv(self.features * 4, 3, 1, impl=self.impl, dtype=self.dtype)(x)
      return depth_to_space(nn.leaky_relu(x, 0.1), 2)
    if self.mode == "resize":
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      return nn.leaky_relu(Conv(self.features, 3, 1, impl=self.impl, dtype=self.dtype)(x), 0.1)
    raise ValueError(f"Upscale.mode={self.mode!r}; valid: {list(UPSCALE_MODES)}")


class ResidualBlock(nn.Module):
  """x + conv3x3(LeakyReLU(conv3x3(x))), then LeakyReLU(0.2): DeepFaceLab's decoder block."""
  impl: str = "im2col"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = nn.leaky_relu(Conv(c, 3, 1, impl=self.impl, dtype=self.dtype)(x), 0.2)
    y = Conv(c, 3, 1, impl=self.impl, dtype=self.dtype)(y)
    return nn.leaky_relu(x + y, 0.2)


def pixel_norm(x, eps: float = 1e-6):
  """x / rms(x) over the last axis (DeepFaceLab's "-u" option, before the bottleneck)."""
  xf = x.astype(jnp.float32)
  return (xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)).astype(x.dtype)


def dense_bottleneck(x_BxF, bottleneck: int, side: int, channels: int, dtype,
                     use_pixel_norm: bool = False, name: str | None = "bottleneck"):
  """[pixel norm] -> Dense(bottleneck) -> Dense(side*side*channels) -> (B, side, side, channels).

  Call inside a compact module: the two Dense layers are the caller's ("bottleneck", "Dense_k")."""
  if use_pixel_norm:
    x_BxF = pixel_norm(x_BxF)
  z = nn.Dense(bottleneck, dtype=dtype, param_dtype=jnp.float32, kernel_init=KERNEL_INIT,
               name=name)(x_BxF)
  x = nn.Dense(side * side * channels, dtype=dtype, param_dtype=jnp.float32,
               kernel_init=KERNEL_INIT)(z)
  return x.reshape(x.shape[0], side, side, channels)


def output_head(x, channels: int, kernel: int, impl: str, name: str = "to_rgb"):
  """K x K conv to `channels` (3 = RGB, 4 = RGB + mask) and a sigmoid, in float32 whatever the
  compute dtype (the final layer and the loss stay float32 under bf16). Call inside a compact module."""
  x = Conv(channels, kernel, 1, impl=impl, dtype=jnp.float32, name=name)(x.astype(jnp.float32))
  return nn.sigmoid(x)


def ch(c: int, width: float) -> int:
  """Channel count c scaled by the width multiplier, at least 1."""
  return max(1, int(round(c * width)))


