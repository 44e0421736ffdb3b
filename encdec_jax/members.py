"""Members: several runs of one sweep trained together as one compiled program.

Runs that may differ only in MEMBER_FIELDS become the members of a group. Params, optimizer
state, batches and metrics get a leading member axis, the train step is vmapped over it, and the
mesh's data axis splits each member's batch as for one run.

- Bottleneck (architectures in PADDABLE, whose bottleneck is the hidden size of a Dense-Dense
  pair): every member is built at the group's largest size K. A member of size k is initialised
  as a k-sized model (fan-in k) and zero-padded; its gradient is masked, so the padded units keep
  value 0 and gradient 0, and the member stays the same function as the k-sized model.
- Loss and Adam: every term that any member uses is computed; each member weights them by its
  own weights (0 for a term it does not use). The mask settings and Adam's arguments are
  per-member arrays (step.hyperparameters), traced values of the step, so a new value does not
  recompile, and the optimizer state has exactly one run's layout.
- Batches: each member's come from the input pipeline keyed by its (seed, data.warp_scale,
  data.warp_anneal, data.input_jitter), shared by members with equal keys; the device path's
  arithmetic (one Augment: the switches, equal in a group) is unchanged.
- Every member is still a run: its own workdir, config.json, metrics.jsonl, previews,
  checkpoints (the unpadded k-sized state, in one run's format: it restores, evaluates, swaps
  and resumes alone), eval.json and W&B run. A group trains in the one training loop
  (encdec_jax/train.py) and resumes from the latest step that all its members saved.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from encdec_jax import assemble, losses, models
from encdec_jax import checkpoint as ckpt_lib
from encdec_jax import config as config_lib
from encdec_jax import state as state_lib
from encdec_jax import warm_start
from encdec_jax.config import ExperimentConfig
from encdec_jax.decode import make_decode_all
from encdec_jax.losses import compose
from encdec_jax.program import data_mesh, device_augmenter, train_source
from encdec_jax.step import adam, hyperparameters, make_step

# The fields members of one group may differ in (and the run-naming fields that change nothing).
MEMBER_FIELDS = ("seed", "loss", "model.bottleneck", "mask.enabled", "mask.eye_multiplier",
                 "mask.mouth_multiplier", "mask.learned_weight", "train.lr", "train.b1", "train.b2",
                 "train.warmdown", "train.clip_norm", "train.critic_lr_scale", "train.encoder_lr_scale",
                 "train.init_from",
                 "data.warp_scale", "data.warp_anneal", "data.input_jitter")
_FREE = ("wandb.name", "wandb.group")
# Architectures whose model.bottleneck is only the hidden size of Dense -> Dense: zero-padded
# units there change nothing. (In df, liae and iae it also sets conv channel counts.)
PADDABLE = ("original", "lightweight", "dfaker")


DEFAULT_MAX = 8  # members per group unless memory or --members says otherwise


def auto_max_members(cfg: ExperimentConfig, budget: float = 0.5) -> int:
  """How many members of this config fit in `budget` of the first device's memory (the host's
  available memory on a CPU), by an estimate: per member its params, Adam's two moments, the
  gradient and the update (5x the params' bytes; 6x with train.ema's average) and 40x its batch's
  bytes of activations. At
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
  per_member = (6 if cfg.train.ema > 0 else 5) * params + 40 * batch
  return int(max(1, min(DEFAULT_MAX, budget * free // per_member)))


def group_key(cfg: ExperimentConfig) -> str:
  """Runs with equal keys can be members of one group."""
  d = config_lib.flatten(dataclasses.asdict(cfg))
  drop = set(MEMBER_FIELDS) | set(_FREE)
  if cfg.model.arch not in PADDABLE:
    drop.discard("model.bottleneck")
  return json.dumps({k: v for k, v in sorted(d.items()) if k not in drop}, sort_keys=True, default=str)


def group_runs(cfgs: list[ExperimentConfig], max_members: int,
               starts: list[int] | None = None) -> list[list[int]]:
  """Indices of `cfgs` in groups of at most max_members (>= 1), in order of first appearance.
  `starts`: each run's latest saved step. A group resumes from the latest step all its members
  saved, so runs that saved different steps go into different groups: a finished run evaluated
  again (another eval.* setting) is never trained again from step 0 beside new runs."""
  groups: dict[tuple, list[list[int]]] = {}
  for i, c in enumerate(cfgs):
    chunks = groups.setdefault((group_key(c), 0 if starts is None else starts[i]), [[]])
    if len(chunks[-1]) >= max_members:
      chunks.append([])
    chunks[-1].append(i)
  return [g for chunks in groups.values() for g in chunks]


def _source_key(c: ExperimentConfig):
  """Members with equal keys see the same batches."""
  return (c.seed, c.data.warp_scale, c.data.warp_anneal, c.data.input_jitter)


def _terms(cfgs):
  """The union of the members' loss terms (a term is its name and parameters), in order."""
  out = []
  for c in cfgs:
    for t in losses.parse_loss_spec(c.loss):
      if (t.name, t.params) not in [(u.name, u.params) for u in out]:
        out.append(losses.LossTerm(t.name, 1.0, t.params))
  return tuple(out)


def _pad_to(x, shape, xp=jnp):
  if tuple(x.shape) == tuple(shape):
    return x
  return xp.pad(x, [(0, b - a) for a, b in zip(x.shape, shape)])


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
    self.mesh, self.replicated = data_mesh(devices)
    self.batch_sharding = NamedSharding(self.mesh, P(None, None, "data"))  # (M, N, B, ...): split B
    self.terms = _terms(cfgs)
    self.hyper = {**hyperparameters(cfgs, self.terms, members=True), "param_mask": self._param_masks()}
    self.batch_keys = compose.batch_keys(any(compose.needs_masks(c) for c in cfgs))
    loss_fn = compose.make_loss_fn(self.model, self.terms)
    on = [c.mask.enabled for c in cfgs]
    mask_on = True if all(on) else False if not any(on) else None  # None: per member

    def member_loss(p, b, h):
      s = dict(h["loss"], mask_on=h["loss"]["mask_on"] if mask_on is None else mask_on)
      return loss_fn(p, b, s)

    step = make_step(member_loss, adam(c0.train.steps), c0.train.nonfinite, members=True,
                     ema=c0.train.ema)
    self._loss = jax.jit(jax.vmap(member_loss))  # the non-finite message's loss terms
    self.state_sharding = jax.tree.map(lambda _: self.replicated, self.stacked_abstract())
    self.step_fn = jax.jit(step, in_shardings=(self.state_sharding, self.batch_sharding, self.replicated),
                           out_shardings=(self.state_sharding, self.replicated), donate_argnums=0)
    self.cfg = c0
    self.decode_all = make_decode_all(self.model)  # one compile at size K for all members
    self.augment_on_device, augment = device_augmenter(c0, devices)
    self._augment = jax.jit(jax.vmap(augment))
    self.sources = {}  # _source_key -> TrainSource, set by batches()
    self._views = {}  # a member tree's structure and shapes -> its compiled view (_view)

  def _param_masks(self) -> dict:
    """Per padded leaf (by its index in the flattened params), (M, ...): 1 on a member's own
    units, 0 on its padding. Leaves no member pads are left out (nothing to multiply)."""
    big = jax.tree.leaves(self.big.abstract_params)
    own = [jax.tree.leaves(a.abstract_params) for a in self.members]
    return {k: jnp.stack([_pad_to(jnp.ones(o[k].shape, jnp.float32), b.shape) for o in own])
            for k, b in enumerate(big) if any(o[k].shape != b.shape for o in own)}

  def stacked_abstract(self):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.m,) + x.shape, x.dtype),
                        self.big.abstract_state)

  # -- between one member's (unpadded, one run's layout) state and the group's --
  def pad(self, member_states: list) -> Any:
    """Members' own states (k-sized) -> the group state (each padded to K, stacked). Padded and
    stacked on the host: jnp's pad and stack compiled one program per leaf shape (about 4 s for
    the default sweep's eight members), numpy's compile nothing, and the values are the same."""
    host = jax.device_get(member_states)
    stacked = jax.tree.map(lambda b, *x: np.stack([_pad_to(np.asarray(v), b.shape, np) for v in x]),
                           self.big.abstract_state, *host)
    return jax.device_put(stacked, self.state_sharding)

  def member_state(self, state, i: int):
    """Member i's state in its own run's layout (the padded units cut off)."""
    return self._view(state, i, self.members[i].abstract_state)

  def _view(self, tree, i: int, abstract):
    """Member i's part of `tree`, each leaf cut to `abstract`'s shape, by one compiled program per
    member size (i is traced) at XLA level 0 (a slice: the same bits): one dispatch per call, at
    every checkpoint, evaluation and preview of every member, instead of one per leaf."""
    key = (jax.tree.structure(abstract), tuple((x.shape, x.dtype) for x in jax.tree.leaves(abstract)))
    if key not in self._views:
      def view(tree, i):
        take = lambda x, a: jax.lax.dynamic_index_in_dim(x, i, keepdims=False)[tuple(slice(0, n) for n in a.shape)]  # noqa: E731
        return jax.tree.map(take, tree, abstract)
      self._views[key] = jax.jit(view).lower(tree, i).compile(models.INIT_COMPILER_OPTIONS)
    return self._views[key](tree, i)

  def init(self, warm: list | None = None):
    """Each member initialised as its own k-sized run would be (its seed, its fan-in), then given
    its warm_start source's weights (`warm`: one Source or None per member)."""
    states, compiled = [], {}
    for m, (a, c) in enumerate(zip(self.members, self.cfgs)):
      k = c.model.bottleneck  # the init depends on nothing else that members may vary
      if k not in compiled:
        init = jax.jit(lambda rng, a=a: state_lib.init_state(a.model, a.tx, a.cfg, rng))
        compiled[k] = init.lower(jax.random.key(0)).compile(models.INIT_COMPILER_OPTIONS)
      s = compiled[k](jax.random.key(c.seed))
      if warm and warm[m] is not None:
        s = state_lib.with_params(s, warm_start.apply(jax.device_get(s.params), warm[m]))
      states.append(s)
    return self.pad(states)

  def device_batch(self, batches: list[dict]) -> dict:
    """Members' host batches (each (N, B, ...)) -> one (M, N, B, ...) sharded array per key. Raw
    batches (TrainSource.raw_batch) are augmented on the devices."""
    raw = "images" in batches[0]
    out = {k: jax.device_put(np.stack([b[k] for b in batches]), self.batch_sharding)
           for k in (batches[0] if raw else self.batch_keys)}
    return {k: v for k, v in self._augment(out).items() if k in self.batch_keys} if raw else out

  # -- the program interface of the training loop (encdec_jax/program.py) --
  def describe(self) -> str:
    return (f"members: {self.m} runs in one program (bottleneck padded to {self.k_max}; "
            f"conv_impl {self.model.cfg.conv_impl})")

  def restore(self, checkpointers, step: int):
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return self.pad([ck.restore(step, ckpt_lib.abstract_like(a.abstract_state, jax.tree.map(
        lambda _: one, a.abstract_state)))[0] for ck, a in zip(checkpointers, self.members)])

  def batches(self, trn: dict, start: int):
    self.sources = {}
    for c in self.cfgs:  # one pipeline per distinct _source_key, shared
      if _source_key(c) not in self.sources:
        self.sources[_source_key(c)] = train_source(c, trn, c.seed)
    iters = {k: src.iterate(start, raw=self.augment_on_device) for k, src in self.sources.items()}

    def gen():
      while True:
        by_key = {k: next(it) for k, it in iters.items()}
        yield self.device_batch([by_key[_source_key(c)] for c in self.cfgs])
    return gen()

  def step(self, state, batch):
    return self.step_fn(state, batch, self.hyper)

  def rows(self, metrics: dict) -> list[dict]:
    return [{k: v[i] for k, v in metrics.items()} for i in range(self.m)]

  def nonfinite(self, state) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(state.nonfinite), np.asarray(state.first_nonfinite)

  def member_params(self, state, i: int):
    """Member i's weights (state.weights) at the group's size: for evaluation with one compiled
    decode."""
    return self._view(state_lib.weights(state), i, self.big.abstract_params)

  def loss_terms_at(self, state, i: int, step: int) -> dict:
    """Member i's loss terms on its batch of `step` from `state` (nothing updated)."""
    get = (lambda s: s.raw_batch(step)) if self.augment_on_device else (lambda s: s.batch(step))
    batch = self.device_batch([get(self.sources[_source_key(c)]) for c in self.cfgs])
    loss, m = jax.device_get(self._loss(state.params, batch, self.hyper))
    return {"train/loss": loss[i], **{k: v[i] for k, v in m.items()}}
