"""Architectures: every one a shared encoder and per-identity parts, composed from blocks.py.

One interface (the train step, evaluation and sweeps never special-case an architecture):
  encode(x_BxHxWxC) -> z                 the shared encoder (of encoder_input(x): with
                                         cfg.input_norm, each image standardised or with its
                                         local contrast normalisation beside it);
  code(z, identity) -> c                 the intermediate that decodes as `identity`
                                         (per-identity and/or shared Dense layers; z for Original);
  decode(c, identity) -> image           decoder `identity`, or the one shared decoder;
  swap(x, to) = decode(code(encode(x), to), to);  with affine (scale, offset): of encode(x) * scale
                                         + offset (encdec_jax/codematch.py);
  __call__(x_NxBxHxWxC) -> (N, B, H', W', C): identity i's images reconstructed as identity i;
  reconstruct(x_NxBxHxWxC) -> (that, z (N, B, ...)): also the shared codes (the latent losses');
  decode_all(x_BxHxWxC) -> (N, B, H', W', C): x swapped into every identity (i == own: recon);
                                         with maps (scale (N, ...), offset (N, ...)): decoder j
                                         reads encode(x) * scale[j] + offset[j].
  critic_logits(z_Bx___) -> (B, N)       with cfg.critic_width > 0: the identity critic's logits
                                         on shared codes (its params: the "critic" group), which
                                         the loss term identity_adversary trains.
  realism_logits(x_BxHxWxC, identity)    with cfg.realism_width > 0: the realism critic's patch
    -> (B, H/4, W/4)                     logits that x is a real image of `identity` (its params:
                                         the "realism" group), which the loss term swap_realism
                                         trains.
Outputs are sigmoid images, 3 channels or 4 with cfg.learn_mask (channel 3: predicted face mask).
H' = output_scale * H: 2 for dfaker, 1 for the rest. `constraints(cfg)` lists what a config
violates, so a bad resolution is refused before anything is compiled.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.config import ModelConfig
from encdec_jax.models.blocks import (ConvBlock, ResidualBlock, Upscale, ch, dense_bottleneck,
                                      output_head)
from encdec_jax.pixels import gaussian_blur


class EncDec(nn.Module):
  """Base: the interface above, given encode / code / decode."""
  cfg: ModelConfig
  output_scale = 1
  downscales = 4  # the encoder halves the input this many times

  # Defaults: a shared `encoder` and per-identity `decoders`; architectures with one shared
  # decoder or an intermediate override decode / code.
  def encode(self, x):
    return self.encoder(encoder_input(x, self.cfg.input_norm))

  def code(self, z, identity: int):
    return z

  def decode(self, c, identity: int):
    return self.decoders[identity](c)

  def __call__(self, x_NxBxHxWxC):
    out, z = self.reconstruct(x_NxBxHxWxC)
    if self.cfg.critic_width:  # creates the critic's params at init (the output does not use it)
      self.critic_logits(z.reshape((-1,) + z.shape[2:]))
    if self.cfg.realism_width:  # likewise the realism critic's
      self.realism_logits(out[0, ..., :3], 0)
    return out

  def reconstruct(self, x_NxBxHxWxC):
    n, b = x_NxBxHxWxC.shape[:2]
    z = self.encode(x_NxBxHxWxC.reshape((n * b,) + x_NxBxHxWxC.shape[2:]))
    z = z.reshape((n, b) + z.shape[1:])
    return jnp.stack([self.decode(self.code(z[i], i), i) for i in range(n)]), z

  def swap(self, x_BxHxWxC, to: int, affine=None):
    z = self.encode(x_BxHxWxC)
    if affine is not None:
      z = z * affine[0] + affine[1]
    return self.decode(self.code(z, to), to)

  def decode_all(self, x_BxHxWxC, maps=None):
    z = self.encode(x_BxHxWxC)
    zs = [z if maps is None else z * maps[0][j] + maps[1][j] for j in range(self.cfg.num_identities)]
    return jnp.stack([self.decode(self.code(zs[j], j), j) for j in range(self.cfg.num_identities)])

  @nn.compact
  def critic_logits(self, z_Bx___):
    return IdentityCritic(self.cfg.critic_width, self.cfg.num_identities, name="critic")(z_Bx___)

  @nn.compact
  def realism_logits(self, x_BxHxWxC, identity: int):
    return RealismCritic(self.cfg.realism_width, self.cfg.num_identities, name="realism")(
        x_BxHxWxC)[..., identity]

  @classmethod
  def constraints(cls, cfg: ModelConfig) -> list[str]:
    """Human-readable violations of what this architecture can build; [] if none."""
    step = 2 ** max(cls.downscales, 4)
    if cfg.resolution % step or cfg.resolution < step:
      return [f"model.arch={cfg.arch!r} needs data.resolution to be a positive multiple of {step} "
              f"(its encoder halves it {cls.downscales} times and its dense map is resolution/16); "
              f"got {cfg.resolution}"]
    return []

  # Shared helpers for subclasses.
  def _kw(self):
    c = self.cfg
    return dict(impl=c.conv_impl, dtype=c.compute_dtype)


# The floor of a channel's std in encoder_input's "image" mode (pixels in [0, 1]): a flat channel
# is divided by 0.01, not by zero.
INPUT_STD_FLOOR = 0.01
# "local" mode: the Gaussian window of the local mean and contrast (sigma, a fraction of the crop's
# side: 2 px at 32 px, about a mouth's height), and the contrast's floor (flat skin is not blown up
# into noise; an open mouth on dark lips, a step of ~0.15, is well above it).
LOCAL_SIGMA = 1 / 16
LOCAL_FLOOR = 0.02
# "contrast" modes: a window half as wide (1 px at 32 px), so the magnitude marks each edge where
# it is. Measured against 1/16 and 1/8 on family 1 (BENCHMARKS.md, "Default sweep"):
# the smile follows far better at 1/32 (0.38 against 0.49 / 0.67), the open mouth as well as
# without the contrast.
CONTRAST_SIGMA = 1 / 32


def encoder_input(x_BxHxWxC, mode: str):
  """What the shared encoder reads (config.model.input_norm): the images themselves ("none");
  each image standardised per channel over its pixels ("image": (x - mean) / sqrt(var +
  INPUT_STD_FLOOR^2)); or the images with their local contrast normalisation as 3 more channels
  ("local": (x - m) / sqrt(v + LOCAL_FLOOR^2), m and v the Gaussian-weighted local mean and
  variance); the images with that normalisation's magnitude as 3 more channels ("contrast":
  |lcn| in a window of CONTRAST_SIGMA, where the crop changes and not which way, so a light brow
  on dark skin and a dark brow on pale skin read alike); or that magnitude alone
  ("contrast_only"). Computed in float32, cast back to x's dtype."""
  if mode == "none":
    return x_BxHxWxC
  x = jnp.asarray(x_BxHxWxC, jnp.float32)
  if mode in ("local", "contrast", "contrast_only"):
    sigma = LOCAL_SIGMA if mode == "local" else CONTRAST_SIGMA
    blur = lambda a: gaussian_blur(a, sigma * a.shape[1], xp=jnp)  # noqa: E731
    d = x - blur(x)
    lcn = d * jax.lax.rsqrt(blur(d * d) + LOCAL_FLOOR ** 2)
    if mode != "local":
      lcn = jnp.abs(lcn)
    out = lcn if mode == "contrast_only" else jnp.concatenate([x, lcn], -1)
    return out.astype(x_BxHxWxC.dtype)
  mean = x.mean((1, 2), keepdims=True)
  var = jnp.square(x - mean).mean((1, 2), keepdims=True)
  return ((x - mean) * jax.lax.rsqrt(var + INPUT_STD_FLOOR ** 2)).astype(x_BxHxWxC.dtype)


class IdentityCritic(nn.Module):
  """Which identity a shared code is: flattened code -> Dense(width) -> leaky ReLU -> Dense(width)
  -> leaky ReLU -> Dense(N) logits, in float32 (DeepFaceLab's "true face" discriminator reads the
  code the same way, as a small network of its own)."""
  width: int
  num_identities: int

  @nn.compact
  def __call__(self, z):
    x = z.reshape(z.shape[0], -1).astype(jnp.float32)
    for _ in range(2):
      x = nn.leaky_relu(nn.Dense(self.width)(x), 0.2)
    return nn.Dense(self.num_identities)(x)


class RealismCritic(nn.Module):
  """Whether each patch of an image looks like a real image of each identity: a patch
  discriminator (pix2pix's, DeepFaceLab's GAN power), (B, H, W, 3) RGB in [0, 1] -> Conv(width,
  4x4, stride 2) -> leaky ReLU -> Conv(2 width, 4x4, stride 2) -> leaky ReLU -> Conv(N, 3x3) ->
  (B, H/4, W/4, N) logits, in float32; each output pixel sees an 18-px patch (half a 32-px crop).
  One trunk for all identities, one output channel each."""
  width: int
  num_identities: int

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32) * 2.0 - 1.0
    for k in (1, 2):
      x = nn.leaky_relu(nn.Conv(k * self.width, (4, 4), strides=2, padding="SAME")(x), 0.2)
    return nn.Conv(self.num_identities, (3, 3), padding="SAME")(x)


class ConvEncoder(nn.Module):
  """Strided 5x5 conv blocks with the given widths, flattened: (B, H, W, 3) -> (B, F)."""
  features: tuple
  impl: str = "im2col"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for f in self.features:
      x = ConvBlock(f, impl=self.impl, dtype=self.dtype)(x)
    return x.reshape(x.shape[0], -1)


class Intermediate(nn.Module):
  """[pixel norm] Dense(bottleneck) -> Dense(s*s*ch) -> (s, s, ch) [-> one upscale]."""
  bottleneck: int
  side: int
  channels: int
  cfg: ModelConfig
  upscale_to: int = 0  # > 0: end with an upscale block to this many channels

  @nn.compact
  def __call__(self, z):
    c = self.cfg
    x = dense_bottleneck(z, self.bottleneck, self.side, self.channels, c.compute_dtype,
                         c.pixel_norm)
    if self.upscale_to:
      x = Upscale(self.upscale_to, impl=c.conv_impl, dtype=c.compute_dtype, mode=c.upscale)(x)
    return x


class UpscaleDecoder(nn.Module):
  """Upscale blocks with the given widths (each optionally followed by a residual block), then the
  output head (K x K conv + sigmoid)."""
  features: tuple
  residual: tuple          # one bool per upscale
  cfg: ModelConfig
  head_kernel: int = 5

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    for f, res in zip(self.features, self.residual):
      x = Upscale(f, impl=c.conv_impl, dtype=c.compute_dtype, mode=c.upscale)(x)
      if res:
        x = ResidualBlock(impl=c.conv_impl, dtype=c.compute_dtype)(x)
    return output_head(x, c.out_channels, self.head_kernel, c.conv_impl)


# ---------------------------------------------------------------------------------------------
class OriginalEncoder(nn.Module):
  """Four 5x5 stride-2 convs, Dense(bottleneck), Dense(s*s*1024), one upscale to 2s x 2s x 512."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxHxWxC):
    c, w = self.cfg, self.cfg.width
    x = x_BxHxWxC
    for f in (128, 256, 512, 1024):
      x = ConvBlock(ch(f, w), impl=c.conv_impl, dtype=c.compute_dtype)(x)
    s = c.resolution // 16
    x = dense_bottleneck(x.reshape(x.shape[0], -1), c.bottleneck, s, ch(1024, w),
                         c.compute_dtype, c.pixel_norm)
    return Upscale(ch(512, w), impl=c.conv_impl, dtype=c.compute_dtype, mode=c.upscale)(x)


class OriginalDecoder(nn.Module):
  """Three upscales (256, 128, 64) and a 5x5 conv to RGB with a sigmoid, computed in float32."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    c, w = self.cfg, self.cfg.width
    for f in (256, 128, 64):
      x = Upscale(ch(f, w), impl=c.conv_impl, dtype=c.compute_dtype, mode=c.upscale)(x)
    return output_head(x, c.out_channels, 5, c.conv_impl)


class Original(EncDec):
  """Deepfakes 'Original': one shared encoder (convs + dense bottleneck), one decoder per identity.
  Swap into j: decoder_j(encoder(x))."""

  def setup(self):
    self.encoder = OriginalEncoder(self.cfg)
    self.decoders = [OriginalDecoder(self.cfg) for _ in range(self.cfg.num_identities)]


class LightweightEncoder(nn.Module):
  """Three 5x5 stride-2 convs (128, 256, 512), Dense(bottleneck), Dense(s*s*512), upscale to 256."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    for f in (128, 256, 512):
      x = ConvBlock(ch(f, c.width), impl=c.conv_impl, dtype=c.compute_dtype)(x)
    s = c.resolution // 16
    x = dense_bottleneck(x.reshape(x.shape[0], -1), c.bottleneck, s, ch(512, c.width),
                         c.compute_dtype, c.pixel_norm)
    return Upscale(ch(256, c.width), impl=c.conv_impl, dtype=c.compute_dtype, mode=c.upscale)(x)


class Lightweight(EncDec):
  """faceswap's Lightweight (~2 GB cards): three 5x5 stride-2 convs (128, 256, 512), Dense(512 =
  bottleneck), Dense(s*s*512), upscale to 256; per-identity decoders of three upscales (512, 256,
  128) and a 5x5 output conv. Swap into j: decoder_j(encoder(x))."""
  downscales = 3

  def setup(self):
    c, w = self.cfg, self.cfg.width
    self.encoder = LightweightEncoder(c)
    self.decoders = [UpscaleDecoder(tuple(ch(f, w) for f in (512, 256, 128)), (False,) * 3, c)
                     for _ in range(c.num_identities)]


class DFaker(EncDec):
  """faceswap's DFaker: the Original encoder (to 2s x 2s x 512); per-identity decoders of four
  upscales (512, 256, 128, 64), the first three each followed by a residual block, and a 5x5
  output conv: the output is twice the input resolution (the loss compares it with the target
  resized 2x, bilinear). Swap into j: decoder_j(encoder(x))."""
  output_scale = 2

  def setup(self):
    c, w = self.cfg, self.cfg.width
    self.encoder = OriginalEncoder(c)
    self.decoders = [UpscaleDecoder(tuple(ch(f, w) for f in (512, 256, 128, 64)),
                                    (True, True, True, False), c)
                     for _ in range(c.num_identities)]


class IAE(EncDec):
  """faceswap's IAE: a shared conv encoder (128, 256, 512, 1024), per-identity intermediates and
  one shared intermediate (each Dense(bottleneck) -> Dense(s*s*bottleneck/2)), and ONE shared
  decoder (upscales 512, 256, 128, 64 + 5x5 output conv) on concat(inter_i(z), inter_shared(z)).
  Swap into j: decoder(concat(inter_j(z), inter_shared(z))) with z = encoder(x)."""

  def setup(self):
    c, w = self.cfg, self.cfg.width
    s, half = c.resolution // 16, max(1, c.bottleneck // 2)
    self.encoder = ConvEncoder(tuple(ch(f, w) for f in (128, 256, 512, 1024)), **self._kw())
    self.inters = [Intermediate(c.bottleneck, s, half, c) for _ in range(c.num_identities)]
    self.inter_shared = Intermediate(c.bottleneck, s, half, c)
    self.decoder = UpscaleDecoder(tuple(ch(f, w) for f in (512, 256, 128, 64)), (False,) * 4, c)

  def code(self, z, identity: int):
    return jnp.concatenate([self.inters[identity](z), self.inter_shared(z)], axis=-1)

  def decode(self, c, identity: int):
    return self.decoder(c)


def _dfl_decoder(cfg: ModelConfig):
  """DeepFaceLab's decoder: upscales d*8, d*4, d*2, each followed by a residual block, then a 1x1
  output conv."""
  d, w = cfg.d_dims, cfg.width
  return UpscaleDecoder(tuple(ch(d * k, w) for k in (8, 4, 2)), (True, True, True), cfg,
                        head_kernel=1)


def _dfl_encoder(cfg: ModelConfig, kw):
  return ConvEncoder(tuple(ch(cfg.e_dims * k, cfg.width) for k in (1, 2, 4, 8)), **kw)


class DFLBase(EncDec):
  """DeepFaceLab SAEHD sizes: resolution 16..256 (published: 64..256), e_dims, ae_dims
  (= model.bottleneck), d_dims; the dense map is resolution/16, upscaled once by the intermediate."""
  max_resolution = 256

  @classmethod
  def constraints(cls, cfg: ModelConfig) -> list[str]:
    errs = super().constraints(cfg)
    if not errs and cfg.resolution > cls.max_resolution:
      errs.append(f"model.arch={cfg.arch!r} is defined up to resolution {cls.max_resolution} "
                  f"(DeepFaceLab SAEHD); got data.resolution={cfg.resolution}")
    return errs


class DF(DFLBase):
  """DeepFaceLab's DF: shared encoder (e_dims x 1, 2, 4, 8) and shared intermediate
  (Dense(ae_dims) -> Dense(s*s*ae_dims) -> upscale to ae_dims), per-identity decoders with a
  residual block after each upscale. Swap into j: decoder_j(inter(encoder(x)))."""

  def setup(self):
    c = self.cfg
    ae = ch(c.bottleneck, 1.0)
    self.encoder = _dfl_encoder(c, self._kw())
    self.inter = Intermediate(c.bottleneck, c.resolution // 16, ae, c, upscale_to=ae)
    self.decoders = [_dfl_decoder(c) for _ in range(c.num_identities)]

  def code(self, z, identity: int):
    return self.inter(z)


class LIAE(DFLBase):
  """DeepFaceLab's LIAE generalised to N identities. A shared encoder, a shared intermediate
  `inter_all` (DFL's inter_AB), per-identity intermediates inter_1..inter_{N-1} (DFL's inter_B), and
  ONE shared decoder. Identity 0 plays DFL's "src" role: its code is concat(inter_all(z),
  inter_all(z)); identity i >= 1 (DFL's "dst") has code concat(inter_i(z), inter_all(z)). A swap
  into j uses j's code computed from the source image x: into identity 0 this is DFL's
  pred_src_dst = decoder(concat(inter_all(z), inter_all(z))); into j >= 1 it is
  decoder(concat(inter_j(z), inter_all(z))). With N = 2 this is exactly DeepFaceLab's LIAE.
  Each intermediate: Dense(ae_dims) -> Dense(s*s*2*ae_dims) -> upscale to 2*ae_dims."""

  def setup(self):
    c = self.cfg
    ae2 = 2 * c.bottleneck
    self.encoder = _dfl_encoder(c, self._kw())
    self.inter_all = Intermediate(c.bottleneck, c.resolution // 16, ae2, c, upscale_to=ae2)
    self.inters = [Intermediate(c.bottleneck, c.resolution // 16, ae2, c, upscale_to=ae2)
                   for _ in range(c.num_identities - 1)]
    self.decoder = _dfl_decoder(c)

  def code(self, z, identity: int):
    shared = self.inter_all(z)
    own = shared if identity == 0 else self.inters[identity - 1](z)
    return jnp.concatenate([own, shared], axis=-1)

  def decode(self, c, identity: int):
    return self.decoder(c)


ARCHITECTURES: dict[str, type[EncDec]] = {
    "original": Original, "lightweight": Lightweight, "dfaker": DFaker, "iae": IAE, "df": DF,
    "liae": LIAE}
