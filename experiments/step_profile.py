"""Where a compiled step's time goes: a per-op breakdown from JAX's profiler trace.

XLA:CPU's thunk runtime records one trace event per executed HLO op (fusion, dot, copy, ...) on
the threads that run it, and runs independent ops concurrently. Each elementary time interval is
split equally among the ops running in it, so the per-op times add up to the time during which
any op runs, and two decoders' convs running side by side each get half. Ops are grouped by the model layer
in their metadata (`Original.decode/decoders_0/Upscale_2/Conv_0`), the pass (forward, or
backward when the name is under `transpose(...)`), and what the op does (matmul, patch
concatenate, shifted slices, elementwise, copy, ...), read from the optimized HLO.

Work the trace does not show (XLA:CPU runs large Eigen matmuls asynchronously: their events mark
the dispatch only; also dispatch and idle time) is reported as "untraced": the step's wall time,
as the caller measures it, minus the traced ops. Matmuls whose events are too short for their
FLOPs are listed with it; since they also run beside traced ops, `summary()` bounds the rate of
all matmuls together rather than giving that row a rate of its own.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import re
import tempfile
import time

import jax
import numpy as np

_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")


@dataclasses.dataclass(frozen=True)
class Op:
  name: str
  layer: str   # e.g. "decoders_*/Upscale_2/Conv_0" (identities folded), or "step" outside the model
  phase: str   # "forward" or "backward"
  kind: str    # "matmul", "patches (concatenate)", "shifted slices (pad/slice)", "copy", ...
  flops: float  # of its dot, if it has one (from the operand shapes), else 0


def _computations(hlo_text: str) -> dict[str, list[str]]:
  comps, cur = {}, None
  for line in hlo_text.splitlines():
    if not line.startswith(" "):
      m = _COMP.match(line)
      cur = m.group(1) if m else None
      if cur:
        comps[cur] = []
    elif cur:
      comps[cur].append(line.strip())
  return comps


def _dims(shape: str) -> list[int]:
  m = re.match(r"\w+\[([\d,]*)\]", shape)
  return [int(d) for d in m.group(1).split(",") if d] if m else []


def _body(comps, name, depth=0):
  """The instructions of a computation and of those it calls (fusions nest)."""
  out = []
  for ins in comps.get(name, []):
    out.append(ins)
    called = re.search(r"calls=%?([\w.\-]+)", ins)
    if called and depth < 4:
      out += _body(comps, called.group(1), depth + 1)
  return out


def _dot_flops(body: list[str], outer: dict | None = None) -> float:
  shapes = dict(outer or {})
  for ins in body:
    m = _INSTR.match(ins)
    if m:
      shapes[m.group(1)] = _dims(m.group(2))
  total = 0.0
  for ins in body:
    m = _INSTR.match(ins)
    if not m or m.group(3) != "dot":
      continue
    lhs = re.match(r"%?([\w.\-]+)", m.group(4)).group(1)
    contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", ins)
    k = int(np.prod([shapes[lhs][int(i)] for i in contract.group(1).split(",") if i])) if (
        contract and lhs in shapes) else 0
    total += 2.0 * float(np.prod(_dims(m.group(2)))) * k
  return total


def _kind(opcode: str, body: list[str]) -> str:
  ops = collections.Counter(_INSTR.match(i).group(3) for i in body if _INSTR.match(i))
  if opcode == "dot" or ops["dot"]:
    return "matmul"
  if opcode == "concatenate" or ops["concatenate"]:
    return "patches (concatenate)"
  if ops["pad"] or (ops["slice"] and opcode == "fusion" and ops["add"]):
    return "shifted slices (pad/slice/add)"
  if opcode == "copy" or (ops["copy"] and not ops["multiply"]):
    return "copy / transpose"
  if ops["select"]:
    return "elementwise with select"
  if ops["reduce"] or opcode == "reduce":
    return "reduction"
  return "elementwise"


def hlo_ops(hlo_text: str) -> dict[str, Op]:
  """Every instruction of an optimized HLO module (compiled.as_text()) that the runtime executes
  as one op: those of the entry computation and of the computations it runs (conditional
  branches, loop bodies), not those inside fusions. Instruction names are unique in a module."""
  comps = _computations(hlo_text)
  fused = {c.group(1) for body in comps.values() for ins in body
           for c in [re.search(r" fusion\(.*calls=%?([\w.\-]+)", ins)] if c}
  ops = {}
  for comp, instrs in comps.items():
    if comp not in fused:
      _add_ops(ops, comps, instrs)
  return ops


def _add_ops(ops, comps, instrs):
  outer = {m.group(1): _dims(m.group(2)) for m in map(_INSTR.match, instrs) if m}
  for ins in instrs:
    m = _INSTR.match(ins)
    if not m:
      continue
    name, _, opcode, rest = m.groups()
    if opcode in ("parameter", "constant", "get-tuple-element", "tuple", "bitcast",
                  "conditional", "while", "call"):  # containers: their contents are traced
      continue
    called = re.search(r"calls=%?([\w.\-]+)", rest) if opcode == "fusion" else None
    body = _body(comps, called.group(1)) if called else [ins]
    meta = re.search(r'op_name="([^"]*)"', rest)
    op_name = meta.group(1) if meta else ""
    layer = "step (loss, optimizer, guard)"
    hit = re.search(r"\.(?:encode|decode|code|apply|__call__)/(.*)$", op_name)
    if hit:
      layer = hit.group(1).rsplit("/", 1)[0]
      layer = re.sub(r"(decoders?|inters?)_\d+", r"\1_*", layer)
      layer = re.sub(r"/jit\([^)]*\)", "", layer)
    phase = "backward" if "transpose(" in op_name else "forward"
    ops[name] = Op(name, layer, phase, _kind(opcode, body), _dot_flops(body, outer))


def attribute(intervals, ops: dict[str, Op]):
  """intervals: (start_ns, end_ns, op name) of traced ops. -> {op name: seconds}, each elementary
  interval split equally among the ops running in it."""
  known = [(s, e, n) for s, e, n in intervals if n in ops and e > s]
  if not known:
    return {}
  starts = np.array([s for s, _, _ in known], np.int64)
  ends = np.array([e for _, e, _ in known], np.int64)
  cuts = np.unique(np.concatenate([starts, ends]))
  lo, hi = cuts[:-1], cuts[1:]
  # ops running in each elementary interval [lo, hi): start <= lo and end >= hi
  first = np.searchsorted(cuts, starts)
  last = np.searchsorted(cuts, ends)
  running = np.zeros(len(lo) + 1, np.int64)
  np.add.at(running, first, 1)
  np.add.at(running, last, -1)
  running = np.cumsum(running)[:-1]
  per = np.where(running > 0, (hi - lo) / np.maximum(running, 1), 0.0)
  per_cum = np.concatenate([[0.0], np.cumsum(per)])
  out = collections.defaultdict(float)
  for (s, e, n), a, b in zip(known, first, last):
    out[n] += (per_cum[b] - per_cum[a]) / 1e9
  return dict(out)


ASYNC_RATE = 1e13  # FLOP/s no CPU here reaches (this machine: ~1.4e11)


@dataclasses.dataclass
class StepProfile:
  steps: int
  wall_s: float                 # per step, as the caller sees it (mean over the traced steps)
  op_s: dict[str, float]        # per step, per op
  ops: dict[str, Op]

  @property
  def untraced_s(self) -> float:
    return max(0.0, self.wall_s - sum(self.op_s.values()))

  @property
  def dispatch_only(self) -> set[str]:
    """Matmuls whose traced time would mean more than ASYNC_RATE FLOP/s: their events mark the
    dispatch of asynchronous work, whose time is in `untraced_s`."""
    return {n for n, s in self.op_s.items()
            if self.ops[n].flops and self.ops[n].flops > ASYNC_RATE * max(s, 1e-12)}

  def by(self, *fields: str) -> list[tuple[tuple, float, float]]:
    """[(key, seconds per step, GFLOP per step)] grouped by Op fields, largest first; the FLOPs
    of dispatch-only matmuls are left out (they belong to the untraced time)."""
    t, f = collections.defaultdict(float), collections.defaultdict(float)
    skip = self.dispatch_only
    for n, s in self.op_s.items():
      key = tuple(getattr(self.ops[n], x) for x in fields)
      t[key] += s
      f[key] += 0.0 if n in skip else self.ops[n].flops / 1e9
    return sorted(((k, t[k], f[k]) for k in t), key=lambda r: -r[1])

  def table(self, *fields: str, top: int = 0) -> str:
    rows = self.by(*fields)
    rows = rows[:top] if top else rows
    total = self.wall_s
    lines = [f"| {' | '.join(fields)} | ms/step | share | GFLOP | GFLOP/s |",
             "|" + "---|" * len(fields) + "---:|---:|---:|---:|"]
    for key, s, gf in rows:
      rate = f"{gf / s:.0f}" if gf and s else ""
      lines.append(f"| {' | '.join(key)} | {1000 * s:.0f} | {s / total:.0%} | "
                   f"{gf:.1f} | {rate} |" if gf else
                   f"| {' | '.join(key)} | {1000 * s:.0f} | {s / total:.0%} | | |")
    gf = sum(self.ops[n].flops for n in self.dispatch_only) / 1e9
    lines.append(f"| untraced (incl. {len(self.dispatch_only)} asynchronous matmuls){' |' * (len(fields) - 1)} | "
                 f"{1000 * self.untraced_s:.0f} | {self.untraced_s / total:.0%} | {gf:.1f} | |")
    return "\n".join(lines)


  def summary(self) -> str:
    """Matmuls against everything else. The asynchronous matmuls run partly in the untraced time
    and partly alongside traced ops (slowing them), so the matmul rate is bounded from below by
    all matmul FLOPs over (traced matmul time + untraced time)."""
    mm_s = sum(s for k, s, _ in self.by("kind") if k == ("matmul",))
    gf = sum(self.ops[n].flops for n in self.op_s if self.ops[n].kind == "matmul") / 1e9
    bound = mm_s + self.untraced_s
    rest = self.wall_s - bound
    return (f"matmuls: {gf:.1f} GFLOP in at most {1000 * bound:.0f} ms (traced matmul ops + "
            f"untraced) = at least {gf / max(bound, 1e-9):.0f} GFLOP/s; everything else "
            f"(patches, shifted slices, elementwise, optimizer): {1000 * rest:.0f} ms "
            f"({rest / self.wall_s:.0%} of the step)")


def profile(hlo_text: str, run_step, steps: int = 2) -> StepProfile:
  """Trace `steps` calls of run_step() (which runs the compiled program whose optimized HLO is
  `hlo_text` once and blocks until it is done) and attribute their time to its ops."""
  ops = hlo_ops(hlo_text)
  walls = []
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      for _ in range(steps):
        t = time.perf_counter()
        run_step()
        walls.append(time.perf_counter() - t)
    path = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
    data = jax.profiler.ProfileData.from_file(path[0])
  intervals = [(e.start_ns, e.start_ns + e.duration_ns, e.name)
               for plane in data.planes for line in plane.lines for e in line.events
               if e.name in ops]
  op_s = {n: s / steps for n, s in attribute(intervals, ops).items()}
  wall = max(sum(walls) / steps, sum(op_s.values()))
  return StepProfile(steps, wall, op_s, ops)
