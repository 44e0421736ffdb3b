"""The benchmark's arithmetic, without flags (tests import it): the analytic FLOP count of the
Original, its cross-check of XLA's cost analysis, and the CPU's matmul ceiling."""
from __future__ import annotations

from encdec_jax.config import ModelConfig
from encdec_jax.models import ch, resolve_conv_impl


def analytic_forward_flops(cfg: ModelConfig, count_padding: bool | None = None) -> float:
  """Multiply-adds x 2 of one image's forward pass through the Original encoder and one decoder
  (the cross-check of XLA's cost analysis in the benchmark; other architectures use the latter).

  XLA's own convs skip the taps that fall on zero padding (and so does its cost analysis);
  the im2col and s2d forms multiply the padding too, as does the PyTorch peer's count.
  `count_padding` defaults to what cfg.conv_impl computes."""
  if cfg.arch != "original":
    raise ValueError(f"analytic_forward_flops counts the 'original' architecture; got {cfg.arch!r}")
  if count_padding is None:
    count_padding = resolve_conv_impl(cfg.conv_impl) != "xla"

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
  macs += _taps(s, 5, 1, 2) ** 2 * cin * cfg.out_channels
  return 2.0 * macs


def cpu_ceiling(jax_gflops: float, torch_gflops: float | None) -> tuple[float, str]:
  """(the machine's fp32 matmul ceiling, which library measured it): the larger of the rates
  measured through XLA and through PyTorch, so the step's fraction of it is at most 1 whichever
  library multiplies faster here."""
  if torch_gflops and torch_gflops > jax_gflops:
    return torch_gflops, "pytorch"
  return jax_gflops, "jax"
