"""The train step (pure, jitted once, sharded, donated) and the loop around it."""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from encdec_jax import assemble as assemble_lib
from encdec_jax import checkpoint as ckpt_lib
from encdec_jax import evaluate as eval_lib
from encdec_jax import images as image_lib
from encdec_jax import judges as judges_lib
from encdec_jax import losses, models, preemption, tracking
from encdec_jax import workdir as workdir_lib
from encdec_jax.config import ConfigError, ExperimentConfig, MaskConfig
from encdec_jax.data import device_augment
from encdec_jax.data.loading import load_data
from encdec_jax.data.pipeline import Augment
from encdec_jax.preemption import Preempted
from encdec_jax import state as state_lib
from encdec_jax.state import NONFINITE_MODES, TrainState


class NonFiniteError(FloatingPointError):
  """A step's loss or gradient was NaN/Inf (train.nonfinite='stop'); no checkpoint after it."""


def resize_to(x_BxHxWxC, hw):
  """Bilinear resize (half-pixel centres, as tf.image.resize) to `hw`; identity if already there."""
  if tuple(x_BxHxWxC.shape[1:3]) == tuple(hw):
    return x_BxHxWxC
  return jax.image.resize(x_BxHxWxC, (x_BxHxWxC.shape[0], *hw, x_BxHxWxC.shape[-1]), "linear")


def loss_settings(loss_terms, mask_cfg: MaskConfig) -> dict:
  """The loss's numbers as `make_loss_fn` reads them: python values for one run; for members
  (encdec_jax/members.py) arrays with a leading member axis, so each member has its own."""
  return {"term_weights": tuple(t.weight for t in loss_terms), "mask_on": mask_cfg.enabled,
          "eye": mask_cfg.eye_multiplier, "mouth": mask_cfg.mouth_multiplier,
          "learned_weight": mask_cfg.learned_weight}


def make_loss_fn(model, loss_terms):
  """(params, batch, settings) -> (loss, metrics). batch: 'inputs' and 'targets', each (N, B, H,
  W, C), and 'masks' (face, eyes, mouth) when the mask is on. Every term of `loss_terms` is
  computed and weighted by settings['term_weights'] (a member weights a term it does not use by
  0); settings['mask_on'] is True, False, or a traced bool (members that differ).

  The loss is the sum over identities of each identity's mean loss (each decoder learns only
  from its own identity; the shared encoder gets all the gradients)."""
  unit = tuple(losses.LossTerm(t.name, 1.0, t.params) for t in loss_terms)

  def loss_fn(params, batch, s):
    recon, mask_pred = models.split_output(model.apply(params, batch["inputs"]))
    n, b = recon.shape[:2]
    flat = lambda a: a.reshape((n * b,) + a.shape[2:])
    out_res = recon.shape[2:4]
    targets = resize_to(flat(batch["targets"]), out_res)  # dfaker: 2x the input resolution
    masks = resize_to(flat(batch["masks"]), out_res) if "masks" in batch else None
    weights = None
    if s["mask_on"] is not False:
      weights = losses.mask_weights(masks, s["eye"], s["mouth"])
      if s["mask_on"] is not True:
        weights = jnp.where(s["mask_on"], weights, jnp.ones_like(weights))
    _, parts = losses.combined_loss(unit, flat(recon), targets, weights)
    total = sum(s["term_weights"][k] * parts[t.name] for k, t in enumerate(loss_terms))
    if mask_pred is not None:  # the learned mask's own term, against the data's face mask
      parts["mask_mse"] = losses.mse(flat(mask_pred), masks[..., 0:1])
      total = total + s["learned_weight"] * parts["mask_mse"]
    per_identity = total.reshape(n, b).mean(axis=1)
    metrics = {f"train/{k}": v.mean() for k, v in parts.items()}
    metrics.update({f"train/loss/{i}": per_identity[i] for i in range(n)})
    return per_identity.sum(), metrics

  return loss_fn


def make_step(loss_fn, update_fn, nonfinite: str, members: bool = False):
  """(state, batch, h) -> (state, metrics): one step of `loss_fn(params, batch, h)` and
  `update_fn(grads, opt_state, params, h)` (an optax update).

  members=True: every argument has a leading member axis (encdec_jax/members.py); the gradient
  and the update are vmapped over it, h['param_mask'] ({leaf index: mask}) multiplies the
  gradients of the padded leaves (zero gradient, so padding stays zero), and when every member's
  step is good the update runs unselected (the common case; see the branch comment below).

  A step whose loss or gradient is not finite never touches params or optimizer state; it is
  counted in state.nonfinite (and the first one's index kept). nonfinite="skip": training goes
  on. nonfinite="stop": every later update is dropped too, so the state the loop sees at its next
  check is exactly the last good one, and the loop stops there without saving."""
  if nonfinite not in NONFINITE_MODES:
    raise ValueError(f"nonfinite={nonfinite!r}; valid: {list(NONFINITE_MODES)}")
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  norm = optax.global_norm
  if members:
    grad_fn, update_fn, norm = jax.vmap(grad_fn), jax.vmap(update_fn), jax.vmap(norm)

  def step(state: TrainState, batch, h):
    (loss, metrics), grads = grad_fn(state.params, batch, h)
    if members and h.get("param_mask"):
      leaves, tree = jax.tree.flatten(grads)
      leaves = [g * h["param_mask"][k] if k in h["param_mask"] else g for k, g in enumerate(leaves)]
      grads = jax.tree.unflatten(tree, leaves)
    grad_norm = norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    apply = ok if nonfinite == "skip" else ok & (state.nonfinite == 0)

    def update(params, opt_state, grads):
      updates, opt_state = update_fn(grads, opt_state, params, h)
      return optax.apply_updates(params, updates), opt_state

    def some(params, opt_state, grads):  # members: only those whose step is good
      new = update(params, opt_state, grads)
      pick = lambda n, o: jnp.where(apply.reshape(apply.shape + (1,) * (n.ndim - 1)), n, o)
      return jax.tree.map(pick, new, (params, opt_state))

    # A branch, not a select of old and new: selecting made XLA copy the donated Adam moments
    # and read every buffer twice (~120 ms of a 4.2 s full-size CPU step, `bench --profile`).
    if members:
      params, opt_state = jax.lax.cond(jnp.all(apply), update, some, state.params, state.opt_state, grads)
    else:
      params, opt_state = jax.lax.cond(apply, update, lambda p, o, g: (p, o),
                                       state.params, state.opt_state, grads)
    bad = state.nonfinite + (~ok).astype(jnp.int32)
    first = jnp.where((state.first_nonfinite < 0) & ~ok, state.step, state.first_nonfinite)
    metrics["train/loss"] = loss
    metrics["train/grad_norm"] = grad_norm
    metrics["train/nonfinite_steps"] = bad
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, nonfinite=bad,
                      first_nonfinite=first), metrics

  return step


def make_train_step(model, tx, loss_terms, mask_cfg: MaskConfig = MaskConfig(),
                    nonfinite: str = "stop"):
  """One run's (state, batch) -> (state, metrics): make_step with this config's loss and `tx`."""
  loss_fn, s = make_loss_fn(model, loss_terms), loss_settings(loss_terms, mask_cfg)
  step = make_step(lambda p, b, h: loss_fn(p, b, s), lambda g, o, p, h: tx.update(g, o, p), nonfinite)
  return lambda state, batch: step(state, batch, None)


class Trainer:
  """Everything compiled for one config: model, optimizer, mesh, shardings, jitted step."""

  def __init__(self, cfg: ExperimentConfig, devices=None):
    self.cfg = cfg
    devices = np.array(devices if devices is not None else jax.devices())
    if cfg.train.batch_size % devices.size:
      raise ConfigError(f"config.train.batch_size={cfg.train.batch_size} (per identity, global) "
                        f"must be divisible by the {devices.size} devices")
    self.mesh = Mesh(devices, ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(None, "data"))  # (N, B, ...): split B
    a = assemble_lib.assemble(cfg, devices.flat[0].platform)
    self.model, self.tx = a.model, a.tx
    self.conv_impl = a.model.cfg.conv_impl  # 'auto' resolved for these devices
    init = lambda rng: state_lib.init_state(self.model, self.tx, cfg, rng)
    abstract = a.abstract_state
    self.state_sharding = jax.tree.map(lambda _: self.replicated, abstract)
    self.abstract_state = ckpt_lib.abstract_like(abstract, self.state_sharding)
    self._init = jax.jit(init, out_shardings=self.state_sharding).lower(
        jax.random.key(0)).compile(models.INIT_COMPILER_OPTIONS)
    needs_masks = cfg.mask.enabled or cfg.model.learn_mask
    self.batch_keys = ("inputs", "targets") + (("masks",) if needs_masks else ())
    self.step_fn = jax.jit(make_train_step(self.model, self.tx, losses.parse_loss_spec(cfg.loss), cfg.mask,
                                           cfg.train.nonfinite),
                           in_shardings=(self.state_sharding, self.batch_sharding),
                           out_shardings=(self.state_sharding, self.replicated),
                           donate_argnums=0)
    self.decode_all = eval_lib.make_decode_all(self.model)
    self.augment_on_device = device_augment.on_device(cfg.data.augment_on, devices)
    self._augment = jax.jit(
        functools.partial(device_augment.augment_batch, a=Augment.from_config(cfg.data)),
        in_shardings=self.batch_sharding, out_shardings=self.batch_sharding)

  def init(self) -> TrainState:
    return self._init(jax.random.key(self.cfg.seed))

  def global_batch_shape(self) -> tuple:
    c = self.cfg
    return (c.data.identities, c.train.batch_size, c.data.resolution, c.data.resolution, 3)

  def process_rows(self) -> tuple[int, int]:
    """(start, stop): the rows of each identity's global batch that live on this process's
    devices, the share its input pipeline produces (all rows with one process)."""
    idx = self.batch_sharding.addressable_devices_indices_map(self.global_batch_shape())
    starts = [sl[1].start or 0 for sl in idx.values()]
    stops = [sl[1].stop if sl[1].stop is not None else self.cfg.train.batch_size for sl in idx.values()]
    lo, hi = min(starts), max(stops)
    if sum(b - a for a, b in set(zip(starts, stops))) != hi - lo:
      raise ValueError(f"process {jax.process_index()}'s devices hold non-contiguous batch rows "
                       f"{sorted(set(zip(starts, stops)))}")
    return lo, hi

  def device_batch(self, batch: dict) -> dict:
    """Host batch (this process's rows, see process_rows) -> global sharded arrays. A raw batch
    (TrainSource.raw_batch: uint8 images and drawn parameters) is augmented on the devices."""
    if "images" in batch:
      n, b = self.global_batch_shape()[:2]
      raw = {k: jax.make_array_from_process_local_data(self.batch_sharding, v, (n, b) + v.shape[2:])
             for k, v in batch.items()}
      return {k: v for k, v in self._augment(raw).items() if k in self.batch_keys}
    shape = self.global_batch_shape()
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, batch[k], shape)
            for k in self.batch_keys}

  def host_batch(self, source, step: int) -> dict:
    """Step `step`'s batch as this process's input pipeline makes it (raw when augmenting on
    the devices)."""
    return source.raw_batch(step) if self.augment_on_device else source.batch(step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       progress: bool = True, allow_config_change: bool = False) -> dict[str, Any]:
  """Trains (resuming from WORKDIR's latest checkpoint), evaluates, returns the final scalars.

  Raises Preempted after saving if SIGTERM/SIGINT arrives, NonFiniteError (nothing saved after
  the last good step) on a NaN/Inf in 'stop' mode, ConfigError/OSError before any compile on
  bad config, data or workdir (WorkdirBusy if another process runs in it)."""
  cfg = assemble_lib.checked_config(config)  # all validation before any data or compilation
  workdir = os.path.abspath(workdir)
  is_main = jax.process_index() == 0
  if not is_main:
    return _train_and_evaluate(cfg, config.to_dict(), workdir, progress, None)
  changed = workdir_lib.check_workdir(workdir, config.to_dict(), allow_config_change)
  with workdir_lib.lock(workdir):
    try:
      return _train_and_evaluate(cfg, config.to_dict(), workdir, progress, changed)
    except NonFiniteError as e:  # its remedy, a lower train.lr, may then be resumed
      workdir_lib.mark_nonfinite_stop(workdir, str(e))
      raise


def _train_and_evaluate(cfg: ExperimentConfig, cfg_dict: dict, workdir: str, progress: bool,
                        changed: dict | None) -> dict[str, Any]:
  from encdec_jax.data.pipeline import TrainSource
  is_main = changed is not None
  if jax.process_count() > 1:  # process 0 prepares the TFDS data, the others then read it
    from jax.experimental import multihost_utils
    if is_main:
      load_data(cfg, workdir)
    multihost_utils.sync_global_devices("encdec_jax:data prepared")
  train, test = load_data(cfg, workdir if is_main else None)
  trainer = Trainer(cfg)
  if is_main:
    m = cfg.model
    print(f"model: {m.arch}, bottleneck {m.bottleneck}, {m.resolution}x{m.resolution}, dtype {m.dtype}, "
          f"conv_impl {trainer.conv_impl}" + (f" (auto on {jax.devices()[0].platform})"
                                               if m.conv_impl == "auto" else ""), flush=True)
  source = TrainSource(train["image"], train["mask"], train["identity"], cfg.data.identities,
                       cfg.train.batch_size, cfg.seed, Augment.from_config(cfg.data),
                       rows=trainer.process_rows())
  ckpt = ckpt_lib.Checkpointer(workdir, cfg.train.keep_checkpoints)
  start = ckpt.latest_step()
  try:
    if start is None:
      state, start = trainer.init(), 0
    else:
      state, _ = ckpt.restore(start, trainer.abstract_state)
  except Exception:
    ckpt.close()
    raise
  if is_main:  # the run has started with this config: only now is it recorded
    workdir_lib.commit(workdir, cfg_dict, changed)
    # A finished run evaluated again replaces its final evaluation instead of adding one.
    tracking.truncate_jsonl(os.path.join(workdir, "metrics.jsonl"), start,
                            drop_eval_at=start if start == cfg.train.steps else None)
  w = cfg.wandb
  tracker = tracking.Tracker(workdir, cfg_dict, mode=w.mode, project=w.project, group=w.group,
                             name=w.name or os.path.basename(workdir), enabled=is_main)
  try:
    judges = judges_lib.for_config(cfg, train, test)
    with preemption.stop_signals() as stop:
      state = _loop(cfg, trainer, source, test, state, start, ckpt, tracker, workdir, progress, stop,
                    judges)
    ckpt.close()
    scalars = eval_lib.evaluate(state.params, trainer.decode_all, test, cfg.data.identities,
                                judges=judges)
    final = {"step": int(state.step), **scalars}
    if int(state.nonfinite):
      final["train/nonfinite_steps"] = int(state.nonfinite)
    if is_main:
      tracker.log(int(state.step), scalars)
      tracker.summary(scalars)
      tmp = os.path.join(workdir, "eval.json.tmp")
      with open(tmp, "w") as f:
        json.dump(final, f, indent=2, sort_keys=True)
      os.replace(tmp, os.path.join(workdir, "eval.json"))
    return final
  finally:
    ckpt.close()
    tracker.close()


def _raise_nonfinite(cfg, trainer, source, state, workdir):
  """The run stopped on a NaN/Inf: recompute the first bad step's loss terms from the state it
  started from (exact: later updates were dropped, the batch is a function of (seed, step))."""
  bad = int(state.first_nonfinite)
  batch = trainer.device_batch(trainer.host_batch(source, bad))
  loss_fn = make_train_step(trainer.model, trainer.tx, losses.parse_loss_spec(cfg.loss), cfg.mask, "stop")
  _, m = jax.jit(loss_fn)(state, batch)
  m = jax.device_get(m)
  terms = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(m.items()) if k != "train/nonfinite_steps")
  raise NonFiniteError(
      f"non-finite loss or gradient at step {bad + 1} (its update was not applied): {terms}. "
      f"The last checkpoint in {workdir}/checkpoints is untouched. Resume with the same "
      f"--workdir and a lower config.train.lr, or config.train.nonfinite='skip' to skip such "
      f"steps.")


def _loop(cfg, trainer, source, test, state, start, ckpt, tracker, workdir, progress, stop,
          judges=None):
  from tqdm.auto import tqdm
  tc, n_img = cfg.train, cfg.train.batch_size * cfg.data.identities
  stop_mode = tc.nonfinite == "stop"
  if stop_mode and int(state.nonfinite):
    _raise_nonfinite(cfg, trainer, source, state, workdir)
  batches = source.iterate(start, raw=trainer.augment_on_device)
  pending = None  # (step, metrics on device): read one step later, so the loop never waits
  t_last, step_last = time.perf_counter(), start
  bar = tqdm(total=tc.steps, initial=start, disable=not progress or jax.process_index() != 0,
             desc=os.path.basename(workdir), unit="step", dynamic_ncols=True)

  def flush(pend):
    nonlocal t_last, step_last
    step, m = pend
    m = jax.device_get(m)
    if stop_mode and m["train/nonfinite_steps"]:
      _raise_nonfinite(cfg, trainer, source, state, workdir)
    now = time.perf_counter()
    m["train/img_per_s"] = (step - step_last) * n_img / max(now - t_last, 1e-9)
    t_last, step_last = now, step
    tracker.log(step, m)
    bar.set_postfix(loss=f"{float(m['train/loss']):.4f}", img_s=f"{m['train/img_per_s']:.1f}")

  done = start
  try:
    for step in range(start, tc.steps):
      state, metrics = trainer.step_fn(state, trainer.device_batch(next(batches)))
      done = step + 1
      if pending is not None:
        flush(pending)
        pending = None
      if done % tc.log_every == 0 or done == tc.steps:
        pending = (done, metrics)
      preempt = preemption.preemption_requested(stop, done)
      saving = done % tc.checkpoint_every == 0 or done == tc.steps or preempt
      if (saving or done % tc.preview_every == 0) and stop_mode and int(state.nonfinite):
        _raise_nonfinite(cfg, trainer, source, state, workdir)  # before anything is written
      if done % tc.preview_every == 0 or done == tc.steps:
        _preview(cfg, trainer, state, test, tracker, workdir, done)
      if cfg.eval.every and done % cfg.eval.every == 0 and done != tc.steps:
        tracker.log(done, eval_lib.evaluate(state.params, trainer.decode_all, test,
                                            cfg.data.identities, judges=judges))
      if saving:
        ckpt.save(done, state, {"step": done})
      bar.update(1)
      if preempt:
        if pending is not None:
          flush(pending)
          pending = None
        ckpt.close()
        tracker.close()
        raise Preempted(done, workdir, stop["signum"])
    if pending is not None:
      flush(pending)
  finally:
    bar.close()
  return state
def _preview(cfg, trainer, state, test, tracker, workdir, step):
  # Every process runs the decode (params span all of them); process 0 writes.
  g = eval_lib.preview_grid(state.params, trainer.decode_all, test, cfg.data.identities)
  if jax.process_index() != 0:
    return
  path = image_lib.save_png(os.path.join(workdir, "previews", f"step_{step:07d}.png"), g,
                            extra={"step": step}, scale=2)
  tracker.log_image(step, "preview", path)
