"""Helpers shared by tests (plain functions; fixtures are in conftest.py)."""
import json

import jax
import numpy as np

from encdec_jax import assemble
from encdec_jax.program import Trainer
from encdec_jax.data.pipeline import Augment, TrainSource


def train_steps(cd, trn: dict, steps: int):
  """(trainer, final state, per-step losses as numpy) of `steps` train steps of config `cd` on
  arrays `trn`, through the same Trainer and host pipeline a run uses."""
  cfg = assemble.checked_config(cd)
  src = TrainSource(trn["image"], trn["mask"], trn["identity"], cfg.data.identities,
                    cfg.train.batch_size, cfg.seed, Augment.from_config(cfg.data))
  tr = Trainer(cfg)
  state, metrics = tr.init(), []
  for step in range(steps):
    state, m = tr.step_fn(state, tr.device_batch(src.batch(step)))
    metrics.append(m["train/loss"])
  return tr, state, np.asarray(jax.device_get(metrics))


def restored_state(cd, workdir: str, step: int):
  """The train state a run in WORKDIR saved at `step`, restored in this process on one device."""
  state, got = assemble.restore(assemble.assemble(assemble.checked_config(cd)), workdir, step)
  assert got == step
  return state


def steps_saved(workdir: str) -> list[int]:
  """The steps of the checkpoints saved in WORKDIR/checkpoints ([] if none)."""
  from encdec_jax.checkpoint import saved_steps
  return saved_steps(workdir)


def read_jsonl(path: str) -> list[dict]:
  """The rows of a metrics.jsonl."""
  with open(path) as f:
    return [json.loads(ln) for ln in f if ln.strip()]


def init_params(model, cfg):
  """Params of `model` (ModelConfig `cfg`) from key 0, as a run initialises them."""
  import jax.numpy as jnp
  from encdec_jax import models
  x = jnp.zeros((cfg.num_identities, 1, cfg.resolution, cfg.resolution, 3), jnp.float32)
  init = jax.jit(model.init).lower(jax.random.key(0), x).compile(models.INIT_COMPILER_OPTIONS)
  return init(jax.random.key(0), x)


def jit_quick(f, **kw):
  """jax.jit(f) compiled with XLA's backend optimisation off, at each call's shapes: for tests
  of values, not speed (a 32 px MS-SSIM and its gradient compile in a fraction of the time)."""
  from encdec_jax import models
  return jax.jit(f, compiler_options=models.INIT_COMPILER_OPTIONS, **kw)


def swapped(model, params, x, to: int):
  """model's swap of x into identity `to` (its raw output, as numpy), compiled by jit_quick: the
  tests' own reference for what inference, evaluation and the CLIs compute (eagerly, a tiny
  model's forward pass compiles op by op, about 6x as long)."""
  return np.asarray(jit_quick(lambda p, v: model.apply(p, v, to, method="swap"))(params, x))


def quick_jit(f, *args):
  """f compiled for `args` with XLA's backend optimisation off: the same function, compiled in a
  fraction of the time, for tests that check structure or equality rather than speed."""
  from encdec_jax import models
  return jax.jit(f).lower(*args).compile(models.INIT_COMPILER_OPTIONS)
