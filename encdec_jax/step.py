"""One training step: pure, (state, batch[, h]) -> (state, metrics), jitted once by its caller.

The loss it differentiates is built in encdec_jax/losses/compose.py; what happens every N steps
(logging, previews, evaluation, checkpoints) is the loop's, encdec_jax/train.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from encdec_jax.config import ExperimentConfig
from encdec_jax.losses import LossTerm, compose, parse_loss_spec
from encdec_jax.state import NONFINITE_MODES, TrainState, adam_update, ema_update

# Of config.train, per run or member: Adam's arguments (state.adam_update).
ADAM_FIELDS = ("lr", "b1", "b2", "warmdown", "clip_norm", "critic_lr_scale", "encoder_lr_scale")


def hyperparameters(cfgs: list[ExperimentConfig], loss_terms, members: bool) -> dict:
  """The numbers a step reads, {"loss": compose.loss_settings, and ADAM_FIELDS}, for the terms
  `loss_terms` (each config weights them by its own config.loss, 0 for a term it does not use).
  One run (members=False, one config): python values, constants of the compiled step. Members
  (encdec_jax/members.py, any number): arrays with a leading member axis, passed to the step as
  an argument, so a new value does not recompile."""
  if not members and len(cfgs) != 1:
    raise ValueError(f"one run's hyperparameters need one config, got {len(cfgs)}")
  per = []
  for c in cfgs:
    own = {(t.name, t.params): t.weight for t in parse_loss_spec(c.loss)}
    weighted = tuple(LossTerm(u.name, own.get((u.name, u.params), 0.0), u.params) for u in loss_terms)
    per.append({"loss": compose.loss_settings(weighted, c.mask),
                **{f: getattr(c.train, f) for f in ADAM_FIELDS}})
  if not members:
    return per[0]

  def stack(*v):
    a = np.array(v)
    return jnp.asarray(a if a.dtype == bool else a.astype(np.float32))
  return jax.tree.map(stack, *per, is_leaf=lambda x: isinstance(x, tuple))


def adam(steps: int):
  """update_fn for make_step: Adam at the step's learning rate (state.adam_update) with the
  arguments in h (hyperparameters); `steps` is train.steps, equal for every member."""
  return lambda g, o, p, h, i: adam_update(g, o, p, i, h["lr"], h["b1"], h["b2"], steps,
                                           h["warmdown"], h["clip_norm"], h["critic_lr_scale"],
                                           h["encoder_lr_scale"])


def make_step(loss_fn, update_fn, nonfinite: str, members: bool = False, ema: float = 0.0):
  """(state, batch, h) -> (state, metrics): one step of `loss_fn(params, batch, h)` and
  `update_fn(grads, opt_state, params, h, step)` (an optax update; `step` is state.step, the
  0-based index of this step, for the learning rate's schedule).

  members=True: every argument has a leading member axis (encdec_jax/members.py); the gradient
  and the update are vmapped over it, h['param_mask'] ({leaf index: mask}) multiplies the
  gradients of the padded leaves (zero gradient, so padding stays zero), and when every member's
  step is good the update runs unselected (the common case; see the branch comment below).

  A step whose loss or gradient is not finite never touches params or optimizer state; it is
  counted in state.nonfinite (and the first one's index kept). nonfinite="skip": training goes
  on. nonfinite="stop": every later update is dropped too, so the state the loop sees at its next
  check is exactly the last good one, and the loop stops there without saving.

  ema > 0 (config.train.ema): state.ema, the params' moving average, moves with every update
  that is applied (decay `ema`, a constant of the step) and with none that is dropped."""
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
      updates, opt_state = update_fn(grads, opt_state, params, h, state.step)
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
    # The average (a state.AveragedTrainState's) moves where the update was applied. After the
    # branch, not an operand of it: carried through it, the average was copied every step, +10%
    # on the default sweep's CPU step (8 members; BENCHMARKS.md, "Default sweep").
    avg = ema_update(state.ema, params, ema, apply) if ema > 0 else None
    bad = state.nonfinite + (~ok).astype(jnp.int32)
    first = jnp.where((state.first_nonfinite < 0) & ~ok, state.step, state.first_nonfinite)
    metrics["train/loss"] = loss
    metrics["train/grad_norm"] = grad_norm
    metrics["train/nonfinite_steps"] = bad
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, nonfinite=bad,
                        first_nonfinite=first)
    return (new if avg is None else new.replace(ema=avg)), metrics

  return step


def make_train_step(model, cfg: ExperimentConfig, nonfinite: str = "stop"):
  """One run's (state, batch) -> (state, metrics): make_step with this config's loss and Adam,
  its hyperparameters constants of the step."""
  terms = parse_loss_spec(cfg.loss)
  loss_fn = compose.make_loss_fn(model, terms)
  h = hyperparameters([cfg], terms, members=False)
  update = adam(cfg.train.steps)
  step = make_step(lambda p, b, _: loss_fn(p, b, h["loss"]), lambda g, o, p, _, i: update(g, o, p, h, i),
                   nonfinite, ema=cfg.train.ema)
  return lambda state, batch: step(state, batch, None)
