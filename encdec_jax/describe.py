"""What a model costs, per part: parameters, forward FLOPs per image (XLA's cost analysis of the
compiled stage), and the memory the compiled train step needs (XLA's memory analysis).

Parts follow the architecture interface (models/archs.py): the shared encoder (`encode`), the
intermediate for each identity (`code`: empty for architectures without one), and the decoder
that decodes each identity (`decode`). Parameter counts are per top-level parameter group.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from encdec_jax import models
from encdec_jax.config import ExperimentConfig


@dataclasses.dataclass
class Stage:
  name: str
  flops_per_image: float
  output_shape: tuple


@dataclasses.dataclass
class Description:
  arch: str
  params: dict            # parameter group -> count
  stages: list            # of Stage: encode, code[i], decode[i]
  step_flops: float       # XLA cost analysis of the whole train step
  step_memory: dict       # bytes: arguments, outputs, temporaries, aliased, total

  @property
  def forward_flops_per_image(self) -> float:
    """Encoder + identity 0's intermediate + identity 0's decoder: one reconstruction."""
    get = {s.name: s.flops_per_image for s in self.stages}
    return get["encode"] + get.get("code[0]", 0.0) + get["decode[0]"]


def _flops(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def describe(cfg: ExperimentConfig, batch: int = 1) -> Description:
  """Compiles each stage (batch `batch`, FLOPs divided by it) and the train step at cfg's batch."""
  from encdec_jax import assemble
  from encdec_jax import step as step_lib
  from encdec_jax.losses import compose
  mc = cfg.model
  a = assemble.assemble(cfg)
  model, params = a.model, a.abstract_params
  r, n = mc.resolution, mc.num_identities
  x = jax.ShapeDtypeStruct((batch, r, r, 3), jnp.float32)
  stages = []
  z = jax.eval_shape(lambda p, x: model.apply(p, x, method="encode"), params, x)
  stages.append(Stage("encode", _flops(lambda p, x: model.apply(p, x, method="encode"), params, x)
                      / batch, z.shape[1:]))
  for i in range(n):
    code = lambda p, z, i=i: model.apply(p, z, i, method="code")
    c = jax.eval_shape(code, params, z)
    f = _flops(code, params, z) / batch
    if f > 0 or c.shape != z.shape:
      stages.append(Stage(f"code[{i}]", f, c.shape[1:]))
  for i in range(n):
    c = jax.eval_shape(lambda p, z, i=i: model.apply(p, z, i, method="code"), params, z)
    dec = lambda p, c, i=i: model.apply(p, c, i, method="decode")
    y = jax.eval_shape(dec, params, c)
    stages.append(Stage(f"decode[{i}]", _flops(dec, params, c) / batch, y.shape[1:]))

  b = cfg.train.batch_size
  keys = compose.batch_keys(compose.needs_masks(cfg))
  batch_abs = {k: jax.ShapeDtypeStruct((n, b, r, r, 3), jnp.float32) for k in keys}
  step = step_lib.make_train_step(model, cfg, cfg.train.nonfinite)
  compiled = jax.jit(step, donate_argnums=0).lower(a.abstract_state, batch_abs).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  mem = compiled.memory_analysis()
  memory = {}
  if mem is not None:
    memory = {"arguments": mem.argument_size_in_bytes, "outputs": mem.output_size_in_bytes,
              "temporaries": mem.temp_size_in_bytes, "aliased": mem.alias_size_in_bytes}
    memory["total"] = (memory["arguments"] + memory["outputs"] + memory["temporaries"]
                       - memory["aliased"])
  return Description(mc.arch, models.param_counts(params), stages, float(cost.get("flops", 0.0)),
                     memory)


def format_description(d: Description, cfg: ExperimentConfig) -> str:
  mc = cfg.model
  lines = [f"{d.arch}: {mc.resolution}x{mc.resolution}, {mc.num_identities} identities, "
           f"bottleneck {mc.bottleneck}, width {mc.width:g}, conv_impl "
           f"{models.resolve_conv_impl(mc.conv_impl)}, dtype {mc.dtype}",
           "", "| part | parameters |", "|---|---:|"]
  lines += [f"| {k} | {v:,} |" for k, v in d.params.items()]
  lines += [f"| **total** | **{sum(d.params.values()):,}** |", "",
            "| stage | forward GFLOP / image | output shape |", "|---|---:|---|"]
  lines += [f"| {s.name} | {s.flops_per_image / 1e9:.3f} | {s.output_shape} |" for s in d.stages]
  lines += [f"| **one reconstruction** | **{d.forward_flops_per_image / 1e9:.3f}** | |", ""]
  b, n = cfg.train.batch_size, mc.num_identities
  lines.append(f"train step (batch {b} x {n} identities): {d.step_flops / 1e9:.1f} GFLOP "
               f"({d.step_flops / (b * n * d.forward_flops_per_image):.2f}x the forward FLOPs)")
  if d.step_memory:
    mib = {k: v / 2 ** 20 for k, v in d.step_memory.items()}
    lines.append(f"train step memory: {mib['total']:.0f} MiB = arguments {mib['arguments']:.0f} + "
                 f"outputs {mib['outputs']:.0f} + temporaries {mib['temporaries']:.0f} - donated "
                 f"{mib['aliased']:.0f} MiB")
  return "\n".join(lines)
