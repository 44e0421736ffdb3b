"""The train step (pure, jitted once, sharded, donated) and the loop around it."""
from __future__ import annotations

import json
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from encdec_jax import checkpoint as ckpt_lib
from encdec_jax import evaluate as eval_lib
from encdec_jax import images as image_lib
from encdec_jax import losses, models, tracking
from encdec_jax.config import (ConfigError, ExperimentConfig, MaskConfig, TrainConfig,
                               from_config_dict)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_optimizer(c: TrainConfig) -> optax.GradientTransformation:
  return optax.adam(c.lr, b1=c.b1, b2=c.b2)


def init_state(model, tx, cfg: ExperimentConfig, rng) -> TrainState:
  r = cfg.model.resolution
  params = model.init(rng, jnp.zeros((cfg.model.num_identities, 1, r, r, 3), jnp.float32))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def resize_to(x_BxHxWxC, hw):
  """Bilinear resize (half-pixel centres, as tf.image.resize) to `hw`; identity if already there."""
  if tuple(x_BxHxWxC.shape[1:3]) == tuple(hw):
    return x_BxHxWxC
  return jax.image.resize(x_BxHxWxC, (x_BxHxWxC.shape[0], *hw, x_BxHxWxC.shape[-1]), "linear")


def make_train_step(model, tx, loss_terms, mask_cfg: MaskConfig = MaskConfig()):
  """(state, batch) -> (state, metrics). batch: 'inputs' and 'targets', each (N, B, H, W, C),
  and 'masks' (face, eyes, mouth) when mask_cfg.enabled.

  The loss is the sum over identities of each identity's mean loss (each decoder learns only
  from its own identity; the shared encoder gets all the gradients).
  """
  def loss_fn(params, batch):
    recon, mask_pred = models.split_output(model.apply(params, batch["inputs"]))
    n, b = recon.shape[:2]
    flat = lambda a: a.reshape((n * b,) + a.shape[2:])
    out_res = recon.shape[2:4]
    targets = resize_to(flat(batch["targets"]), out_res)  # dfaker: 2x the input resolution
    masks = resize_to(flat(batch["masks"]), out_res) if "masks" in batch else None
    weights = None
    if mask_cfg.enabled:
      weights = losses.mask_weights(masks, mask_cfg.eye_multiplier, mask_cfg.mouth_multiplier)
    total, parts = losses.combined_loss(loss_terms, flat(recon), targets, weights)
    if mask_pred is not None:  # the learned mask's own term, against the data's face mask
      parts["mask_mse"] = losses.mse(flat(mask_pred), masks[..., 0:1])
      total = total + mask_cfg.learned_weight * parts["mask_mse"]
    per_identity = total.reshape(n, b).mean(axis=1)
    metrics = {f"train/{k}": v.mean() for k, v in parts.items()}
    metrics.update({f"train/loss/{i}": per_identity[i] for i in range(n)})
    return per_identity.sum(), metrics

  def train_step(state: TrainState, batch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["train/loss"] = loss
    metrics["train/grad_norm"] = optax.global_norm(grads)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


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
    self.model = models.build_model(cfg.model)
    self.tx = make_optimizer(cfg.train)
    init = lambda rng: init_state(self.model, self.tx, cfg, rng)
    abstract = jax.eval_shape(init, jax.random.key(0))
    self.state_sharding = jax.tree.map(lambda _: self.replicated, abstract)
    self.abstract_state = ckpt_lib.abstract_like(abstract, self.state_sharding)
    self._init = jax.jit(init, out_shardings=self.state_sharding).lower(
        jax.random.key(0)).compile(models.INIT_COMPILER_OPTIONS)
    needs_masks = cfg.mask.enabled or cfg.model.learn_mask
    self.batch_keys = ("inputs", "targets") + (("masks",) if needs_masks else ())
    self.step_fn = jax.jit(make_train_step(self.model, self.tx, cfg.loss, cfg.mask),
                           in_shardings=(self.state_sharding, self.batch_sharding),
                           out_shardings=(self.state_sharding, self.replicated),
                           donate_argnums=0)
    self.decode_all = eval_lib.make_decode_all(self.model)

  def init(self) -> TrainState:
    return self._init(jax.random.key(self.cfg.seed))

  def device_batch(self, batch: dict) -> dict:
    """Host batch (this process's share) -> global sharded arrays."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, batch[k])
            for k in self.batch_keys}


def _check_workdir(workdir: str, cfg_dict: dict) -> None:
  """Creates the workdir, fails early if it is not writable or holds another config."""
  os.makedirs(workdir, exist_ok=True)
  probe = os.path.join(workdir, ".write_test")
  try:
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise OSError(f"workdir {workdir!r} is not writable: {e}") from None
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    old, new = _flatten(saved), _flatten(cfg_dict)
    diff = sorted(k for k in set(old) | set(new)
                  if old.get(k) != new.get(k) and not _may_change_on_resume(k))
    if diff:
      raise ConfigError(f"workdir {workdir!r} holds a run with another config; differing fields: "
                        + ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in diff)
                        + ". Use a new --workdir.")
  with open(path, "w") as f:
    json.dump(cfg_dict, f, indent=2, sort_keys=True)


# Fields that do not change what a run computes: a resumed run may extend, log or save differently.
_RESUME_FREE = {"train.steps", "train.log_every", "train.preview_every", "train.checkpoint_every",
                "train.keep_checkpoints", "data.dir"}


def _may_change_on_resume(key: str) -> bool:
  return key in _RESUME_FREE or key.startswith("wandb.")


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def load_data(cfg: ExperimentConfig):
  """(train arrays, test arrays) of the configured dataset; TFDS imported only here."""
  from encdec_jax.data import synthetic_faces
  d = cfg.data
  b = synthetic_faces.builder(d.resolution, d.identities, d.seed, d.train_per_identity,
                              d.test_per_identity, d.dir)
  return synthetic_faces.load_split(b, "train"), synthetic_faces.load_split(b, "test")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       progress: bool = True) -> dict[str, Any]:
  """Trains (resuming from WORKDIR's latest checkpoint), evaluates, returns the final scalars."""
  from encdec_jax.data.pipeline import Augment, TrainSource
  cfg = from_config_dict(config)  # all validation before any data or compilation
  workdir = os.path.abspath(workdir)
  is_main = jax.process_index() == 0
  cfg_dict = config.to_dict()
  if is_main:
    _check_workdir(workdir, cfg_dict)
  trainer = Trainer(cfg)
  train, test = load_data(cfg)
  source = TrainSource(train["image"], train["mask"], train["identity"], cfg.data.identities,
                       cfg.train.batch_size, cfg.seed, Augment.from_config(cfg.data))
  ckpt = ckpt_lib.Checkpointer(workdir, cfg.train.keep_checkpoints)
  start = ckpt.latest_step()
  if start is None:
    state, start = trainer.init(), 0
  else:
    state, _ = ckpt.restore(start, trainer.abstract_state)
  if is_main:
    tracking.truncate_jsonl(os.path.join(workdir, "metrics.jsonl"), start)
  w = cfg.wandb
  tracker = tracking.Tracker(workdir, cfg_dict, mode=w.mode, project=w.project, group=w.group,
                             name=w.name or os.path.basename(workdir), enabled=is_main)
  try:
    state = _loop(cfg, trainer, source, test, state, start, ckpt, tracker, workdir, progress)
    ckpt.close()
    scalars = eval_lib.evaluate(state.params, trainer.decode_all, test, cfg.data.identities)
    final = {"step": int(state.step), **scalars}
    if is_main:
      tracker.log(int(state.step), scalars)
      tracker.summary(scalars)
      with open(os.path.join(workdir, "eval.json"), "w") as f:
        json.dump(final, f, indent=2, sort_keys=True)
    return final
  finally:
    tracker.close()


def _loop(cfg, trainer, source, test, state, start, ckpt, tracker, workdir, progress):
  from tqdm.auto import tqdm
  tc, n_img = cfg.train, cfg.train.batch_size * cfg.data.identities
  batches = source.iterate(start)
  pending = None  # (step, metrics on device): read one step later, so the loop never waits
  t_last, step_last = time.perf_counter(), start
  bar = tqdm(total=tc.steps, initial=start, disable=not progress or jax.process_index() != 0,
             desc=os.path.basename(workdir), unit="step", dynamic_ncols=True)

  def flush(pend):
    nonlocal t_last, step_last
    step, m = pend
    m = jax.device_get(m)
    if not np.isfinite(m["train/loss"]):
      raise FloatingPointError(f"non-finite loss at step {step}: " + ", ".join(
          f"{k}={float(v):.4g}" for k, v in sorted(m.items())))
    now = time.perf_counter()
    m["train/img_per_s"] = (step - step_last) * n_img / max(now - t_last, 1e-9)
    t_last, step_last = now, step
    tracker.log(step, m)
    bar.set_postfix(loss=f"{float(m['train/loss']):.4f}", img_s=f"{m['train/img_per_s']:.1f}")

  for step in range(start, tc.steps):
    state, metrics = trainer.step_fn(state, trainer.device_batch(next(batches)))
    done = step + 1
    if pending is not None:
      flush(pending)
      pending = None
    if done % tc.log_every == 0 or done == tc.steps:
      pending = (done, metrics)
    if done % tc.preview_every == 0 or done == tc.steps:
      _preview(cfg, trainer, state, test, tracker, workdir, done)
    if done % tc.checkpoint_every == 0 or done == tc.steps:
      ckpt.save(done, state, {"step": done})
    bar.update(1)
  if pending is not None:
    flush(pending)
  bar.close()
  return state


def _preview(cfg, trainer, state, test, tracker, workdir, step):
  if jax.process_index() != 0:
    return
  g = eval_lib.preview_grid(state.params, trainer.decode_all, test, cfg.data.identities)
  path = image_lib.save_png(os.path.join(workdir, "previews", f"step_{step:07d}.png"), g,
                            extra={"step": step}, scale=2)
  tracker.log_image(step, "preview", path)
