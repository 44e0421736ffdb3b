"""Members: several runs of one sweep trained together as one compiled program.

Runs that share everything but the seed, the bottleneck size (architectures whose bottleneck is
the hidden size of a Dense-Dense pair), the loss weights, the mask settings and Adam's lr, b1 and
b2 become the members of a group. Params, optimizer state, batches and metrics get a leading
member axis, the train step is vmapped over it, and the mesh's data axis splits each member's
batch as for one run.

- Bottleneck: every member is built at the group's largest size K. A member of size k is
  initialised as a k-sized model (fan-in k) and zero-padded; its gradient is masked, so the
  padded units keep value 0 and gradient 0, and the member stays the same function as the
  k-sized model.
- Loss: every term that any member uses is computed; each member weights them by its own
  weights (0 for a term it does not use). Mask on/off, eye and mouth multipliers per member.
- Adam: optax.adam built inside the step from the member's (lr, b1, b2), traced values, so a new
  value does not recompile, and the optimizer state has exactly one run's layout.
- Every member is still a run: its own workdir, config.json, metrics.jsonl, previews,
  checkpoints (the unpadded k-sized state, in one run's format: it restores, evaluates, swaps
  and resumes alone), eval.json and W&B run. A group resumes from the latest step that all its
  members saved.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from encdec_jax import assemble, losses, models
from encdec_jax import state as state_lib
from encdec_jax.config import ExperimentConfig

# The fields members of one group may differ in (and the run-naming fields that change nothing).
MEMBER_FIELDS = ("seed", "loss", "model.bottleneck", "mask.enabled", "mask.eye_multiplier",
                 "mask.mouth_multiplier", "mask.learned_weight", "train.lr", "train.b1", "train.b2")
_FREE = ("wandb.name", "wandb.group")
# Architectures whose model.bottleneck is only the hidden size of Dense -> Dense: zero-padded
# units there change nothing. (In df, liae and iae it also sets conv channel counts.)
PADDABLE = ("original", "lightweight", "dfaker")


DEFAULT_MAX = 8  # members per group unless memory or --members says otherwise


def auto_max_members(cfg: ExperimentConfig, budget: float = 0.5) -> int:
  """How many members of this config fit in `budget` of the first device's memory (the host's
  available memory on a CPU), by an estimate: per member its params, Adam's two moments, the
  gradient and the update (5x the params' bytes) and 40x its batch's bytes of activations. At
  most DEFAULT_MAX; at least 1."""
  dev = jax.devices()[0]
  stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
  else:  # the host's MemAvailable (free pages alone leave out the reclaimable page cache)
    try:
      with open("/proc/meminfo") as f:
        free = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
      return DEFAULT_MAX
  a = assemble.assemble(cfg, dev.platform)
  params = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(a.abstract_params))
  d = cfg.data
  batch = d.identities * cfg.train.batch_size * d.resolution ** 2 * 3 * 4
  per_member = 5 * params + 40 * batch
  return int(max(1, min(DEFAULT_MAX, budget * free // per_member)))


def group_key(cfg: ExperimentConfig) -> str:
  """Runs with equal keys can be members of one group."""
  from encdec_jax.workdir import flatten
  d = flatten(dataclasses.asdict(cfg))
  drop = set(MEMBER_FIELDS) | set(_FREE)
  if cfg.model.arch not in PADDABLE:
    drop.discard("model.bottleneck")
  return json.dumps({k: v for k, v in sorted(d.items()) if k not in drop}, sort_keys=True, default=str)


def group_runs(cfgs: list[ExperimentConfig], max_members: int) -> list[list[int]]:
  """Indices of `cfgs` in groups of at most max_members (>= 1), in order of first appearance."""
  groups: dict[str, list[list[int]]] = {}
  for i, c in enumerate(cfgs):
    chunks = groups.setdefault(group_key(c), [[]])
    if len(chunks[-1]) >= max_members:
      chunks.append([])
    chunks[-1].append(i)
  return [g for chunks in groups.values() for g in chunks]


def _terms(cfgs):
  """The union of the members' loss terms (a term is its name and parameters), in order."""
  out = []
  for c in cfgs:
    for t in losses.parse_loss_spec(c.loss):
      if (t.name, t.params) not in [(u.name, u.params) for u in out]:
        out.append(losses.LossTerm(t.name, 1.0, t.params))
  return tuple(out)


def _pad_to(x, shape):
  if tuple(x.shape) == tuple(shape):
    return x
  return jnp.pad(x, [(0, b - a) for a, b in zip(x.shape, shape)])


class Group:
  """The compiled program of a group: model at the largest bottleneck, vmapped step, per-member
  settings, and the maps between one member's state and the group's."""

  def __init__(self, cfgs: list[ExperimentConfig], devices=None):
    keys = {group_key(c) for c in cfgs}
    if len(keys) != 1:
      raise ValueError("members of one group must differ only in " + ", ".join(MEMBER_FIELDS))
    self.cfgs, self.m = cfgs, len(cfgs)
    devices = np.array(devices if devices is not None else jax.devices())
    platform = devices.flat[0].platform
    c0 = cfgs[0]
    self.k_max = max(c.model.bottleneck for c in cfgs)
    self.base = dataclasses.replace(c0, model=dataclasses.replace(c0.model, bottleneck=self.k_max))
    self.big = assemble.assemble(self.base, platform)
    self.model = self.big.model
    self.members = [assemble.assemble(c, platform) for c in cfgs]
    self.mesh = Mesh(devices, ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(None, None, "data"))  # (M, N, B, ...): split B
    self.terms = _terms(cfgs)
    self.h = self._settings()
    needs_masks = any(c.mask.enabled for c in cfgs) or c0.model.learn_mask
    self.batch_keys = ("inputs", "targets") + (("masks",) if needs_masks else ())
    from encdec_jax import train
    loss_fn = train.make_loss_fn(self.model, self.terms)
    on = [c.mask.enabled for c in cfgs]
    mask_on = True if all(on) else False if not any(on) else None  # None: per member

    def member_loss(p, b, h):
      s = dict(h["loss"], mask_on=h["loss"]["mask_on"] if mask_on is None else mask_on)
      return loss_fn(p, b, s)

    def member_update(g, o, p, h):
      return optax.adam(h["lr"], b1=h["b1"], b2=h["b2"]).update(g, o, p)

    step = train.make_step(member_loss, member_update, c0.train.nonfinite, members=True)
    self.state_sharding = jax.tree.map(lambda _: self.replicated, self.stacked_abstract())
    self.step_fn = jax.jit(step, in_shardings=(self.state_sharding, self.batch_sharding, self.replicated),
                           out_shardings=(self.state_sharding, self.replicated), donate_argnums=0)
    self.decode_all = None  # evaluation and previews (train_group): one compile at size K

  def _settings(self) -> dict:
    """Per-member numbers, each with a leading member axis."""
    f = lambda v: jnp.asarray(np.array(v, np.float32))
    w = [[next((t.weight for t in losses.parse_loss_spec(c.loss) if (t.name, t.params) == (u.name, u.params)),
               0.0) for u in self.terms] for c in self.cfgs]
    loss = {"term_weights": f(w), "mask_on": jnp.asarray([c.mask.enabled for c in self.cfgs]),
            "eye": f([c.mask.eye_multiplier for c in self.cfgs]),
            "mouth": f([c.mask.mouth_multiplier for c in self.cfgs]),
            "learned_weight": f([c.mask.learned_weight for c in self.cfgs])}
    # Per padded leaf (by its index in the flattened params): 1 on a member's own units, 0 on
    # its padding. Leaves no member pads are left out (nothing to multiply).
    big = jax.tree.leaves(self.big.abstract_params)
    own = [jax.tree.leaves(a.abstract_params) for a in self.members]
    masks = {k: jnp.stack([_pad_to(jnp.ones(o[k].shape, jnp.float32), b.shape) for o in own])
             for k, b in enumerate(big) if any(o[k].shape != b.shape for o in own)}
    return {"loss": loss, "lr": f([c.train.lr for c in self.cfgs]),
            "b1": f([c.train.b1 for c in self.cfgs]), "b2": f([c.train.b2 for c in self.cfgs]),
            "param_mask": masks}

  def stacked_abstract(self):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.m,) + x.shape, x.dtype),
                        self.big.abstract_state)

  # -- between one member's (unpadded, one run's layout) state and the group's --
  def pad(self, member_states: list) -> Any:
    """Members' own states (k-sized) -> the group state (each padded to K, stacked)."""
    padded = [jax.tree.map(lambda x, b: _pad_to(jnp.asarray(x), b.shape), s, self.big.abstract_state)
              for s in member_states]
    return jax.device_put(jax.tree.map(lambda *x: jnp.stack(x), *padded), self.state_sharding)

  def member_state(self, state, i: int):
    """Member i's state in its own run's layout (the padded units cut off)."""
    return jax.tree.map(lambda x, a: x[i][tuple(slice(0, n) for n in a.shape)],
                        state, self.members[i].abstract_state)

  def member_params_padded(self, state, i: int):
    """Member i's params at the group's size: for evaluation with one compiled decode."""
    return jax.tree.map(lambda x: x[i], state.params)

  def init(self):
    """Each member initialised as its own k-sized run would be (its seed, its fan-in)."""
    states, compiled = [], {}
    for a, c in zip(self.members, self.cfgs):
      k = c.model.bottleneck  # the init depends on nothing else that members may vary
      if k not in compiled:
        init = jax.jit(lambda rng, a=a: state_lib.init_state(a.model, a.tx, a.cfg, rng))
        compiled[k] = init.lower(jax.random.key(0)).compile(models.INIT_COMPILER_OPTIONS)
      states.append(compiled[k](jax.random.key(c.seed)))
    return self.pad(states)

  def device_batch(self, batches: list[dict]) -> dict:
    """Members' host batches (each (N, B, ...)) -> one (M, N, B, ...) sharded array per key."""
    return {k: jax.device_put(np.stack([b[k] for b in batches]), self.batch_sharding)
            for k in self.batch_keys}


@contextlib.contextmanager
def _all(contexts):
  with contextlib.ExitStack() as stack:
    for c in contexts:
      stack.enter_context(c)
    yield


def train_group(config_dicts: list, workdirs: list[str], *, progress: bool = True) -> list:
  """Trains the runs together (resuming from the latest step all of them saved), evaluates each,
  writes each run's files as train.train_and_evaluate does. Returns, per run, its final scalars
  or the NonFiniteError that stopped it (the others go on). Single-process only."""
  from encdec_jax import workdir as workdir_lib
  if jax.process_count() > 1:
    raise ValueError("members train in one process; run multi-host sweeps with --members=1")
  cfgs = [assemble.checked_config(c) for c in config_dicts]
  dicts = [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in config_dicts]
  workdirs = [os.path.abspath(w) for w in workdirs]
  changed = [workdir_lib.check_workdir(w, d) for w, d in zip(workdirs, dicts)]
  with _all(workdir_lib.lock(w) for w in workdirs):
    return _train_group(cfgs, dicts, workdirs, changed, progress)


def _common_start(ckpts) -> int:
  """The latest step every member saved (0 if one has none): a killed group resumes there."""
  steps = [set(c.all_steps()) for c in ckpts]
  common = set.intersection(*steps) if steps else set()
  return max(common) if common else 0


def nonfinite_message(first: int, workdir: str) -> str:
  return (f"non-finite loss or gradient at step {first + 1} (its update was not applied). The last "
          f"checkpoint in {workdir}/checkpoints is untouched. Resume with the same --workdir and a "
          f"lower config.train.lr, or config.train.nonfinite='skip' to skip such steps.")


def _train_group(cfgs, dicts, workdirs, changed, progress):
  from tqdm.auto import tqdm

  from encdec_jax import checkpoint as ckpt_lib, evaluate as eval_lib, images as image_lib
  from encdec_jax import judges as judges_lib, preemption, tracking, train
  from encdec_jax import workdir as workdir_lib
  from encdec_jax.data import device_augment
  from encdec_jax.data.loading import load_data
  from encdec_jax.data.pipeline import Augment, TrainSource
  c0 = cfgs[0]
  trn, test = load_data(c0, workdirs[0])
  g = Group(cfgs)
  m = g.m
  ckpts = [ckpt_lib.Checkpointer(w, c.train.keep_checkpoints) for w, c in zip(workdirs, cfgs)]
  trackers = []
  try:
    start = _common_start(ckpts)
    if start == 0:
      state = g.init()
    else:
      one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      states = [ck.restore(start, ckpt_lib.abstract_like(a.abstract_state, jax.tree.map(lambda _: one, a.abstract_state)))[0]
                for ck, a in zip(ckpts, g.members)]
      state = g.pad(states)
    for w, d, ch in zip(workdirs, dicts, changed):
      workdir_lib.commit(w, d, ch)
      tracking.truncate_jsonl(os.path.join(w, "metrics.jsonl"), start)
    trackers = [tracking.Tracker(w, d, mode=c.wandb.mode, project=c.wandb.project, group=c.wandb.group,
                                 name=c.wandb.name or os.path.basename(w))
                for w, d, c in zip(workdirs, dicts, cfgs)]
    print(f"members: {m} runs in one program (bottleneck padded to {g.k_max}; "
          f"conv_impl {g.model.cfg.conv_impl})", flush=True)
    judges = judges_lib.for_config(c0, trn, test)
    on_device = device_augment.on_device(c0.data.augment_on, jax.devices())
    aug = Augment.from_config(c0.data)
    seeds = sorted({c.seed for c in cfgs})
    sources = {s: TrainSource(trn["image"], trn["mask"], trn["identity"], c0.data.identities,
                              c0.train.batch_size, s, aug) for s in seeds}
    iters = {s: src.iterate(start, raw=on_device) for s, src in sources.items()}
    augment = None
    if on_device:
      import functools
      augment = jax.jit(jax.vmap(functools.partial(device_augment.augment_batch, a=aug)))
    g.decode_all = eval_lib.make_decode_all(g.model)
    failed: dict[int, str] = {}
    tc, n_img = c0.train, c0.train.batch_size * c0.data.identities * m
    bar = tqdm(total=tc.steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"{m} members")
    pending, t_last, step_last = None, time.perf_counter(), start

    def flush(pend):
      nonlocal t_last, step_last
      step, mt = pend
      mt = jax.device_get(mt)
      now = time.perf_counter()
      ips = (step - step_last) * n_img / max(now - t_last, 1e-9)
      t_last, step_last = now, step
      for i in range(m):
        row = {k: v[i] for k, v in mt.items()}
        row["train/img_per_s"] = ips / m
        if tc.nonfinite == "stop" and row["train/nonfinite_steps"] and i not in failed:
          failed[i] = nonfinite_message(int(state.first_nonfinite[i]), workdirs[i])
          continue
        if i not in failed:
          trackers[i].log(step, row)
      bar.set_postfix(loss=f"{float(np.mean(mt['train/loss'])):.4f}", img_s=f"{ips:.1f}")

    def batch(step_batches):
      if on_device:
        raw = {k: jax.device_put(np.stack([b[k] for b in step_batches]), g.batch_sharding)
               for k in step_batches[0]}
        return {k: v for k, v in augment(raw).items() if k in g.batch_keys}
      return g.device_batch(step_batches)

    with preemption.stop_signals() as stop:
      try:
        for step in range(start, tc.steps):
          by_seed = {s: next(it) for s, it in iters.items()}
          state, metrics = g.step_fn(state, batch([by_seed[c.seed] for c in cfgs]), g.h)
          done = step + 1
          if pending is not None:
            flush(pending)
            pending = None
          if done % tc.log_every == 0 or done == tc.steps:
            pending = (done, metrics)
          preempt = preemption.preemption_requested(stop, done)
          saving = done % tc.checkpoint_every == 0 or done == tc.steps or preempt
          if saving or done % tc.preview_every == 0:
            if pending is not None:
              flush(pending)
              pending = None
            if tc.nonfinite == "stop":  # before anything is written, as for one run
              for i in np.flatnonzero(np.asarray(state.nonfinite)):
                failed.setdefault(int(i), nonfinite_message(int(state.first_nonfinite[i]), workdirs[i]))
          if done % tc.preview_every == 0 or done == tc.steps:
            for i in range(m):
              if i in failed:
                continue
              grid = eval_lib.preview_grid(g.member_params_padded(state, i), g.decode_all, test,
                                           c0.data.identities)
              path = image_lib.save_png(os.path.join(workdirs[i], "previews", f"step_{done:07d}.png"),
                                        grid, extra={"step": done}, scale=2)
              trackers[i].log_image(done, "preview", path)
          if c0.eval.every and done % c0.eval.every == 0 and done != tc.steps:
            for i in range(m):
              if i not in failed:
                trackers[i].log(done, eval_lib.evaluate(g.member_params_padded(state, i), g.decode_all,
                                                        test, c0.data.identities, judges=judges))
          if saving:
            for i in range(m):
              if i not in failed:
                ckpts[i].save(done, g.member_state(state, i), {"step": done})
          bar.update(1)
          if preempt:
            raise preemption.Preempted(done, workdirs[0], stop["signum"])
        if pending is not None:
          flush(pending)
      finally:
        bar.close()
    for ck in ckpts:
      ck.close()
    results = []
    for i in range(m):
      if i in failed:
        workdir_lib.mark_nonfinite_stop(workdirs[i], failed[i])
        results.append(train.NonFiniteError(failed[i]))
        continue
      scalars = eval_lib.evaluate(g.member_params_padded(state, i), g.decode_all, test,
                                  c0.data.identities, judges=judges)
      final = {"step": int(state.step[i]), **scalars}
      trackers[i].log(final["step"], scalars)
      trackers[i].summary(scalars)
      tmp = os.path.join(workdirs[i], "eval.json.tmp")
      with open(tmp, "w") as f:
        json.dump(final, f, indent=2, sort_keys=True)
      os.replace(tmp, os.path.join(workdirs[i], "eval.json"))
      results.append(final)
    return results
  finally:
    for ck in ckpts:
      ck.close()
    for t in trackers:
      t.close()
