"""Evaluate a run's latest (or a given) checkpoint: python -m experiments.evaluate --workdir=W

Reads W/config.json, restores the checkpoint, and writes the metrics (reconstruction, ground-truth
swaps where the data has them, and the judges' identity transfer, leakage and pose/expression
error) to W/eval.json, W/metrics.jsonl and, if the run used it, W&B. Prints the judges' accuracy.
"""
import json
import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a run's workdir", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  import ml_collections
  from encdec_jax import checkpoint as ckpt_lib, config as config_lib, evaluate, train, tracking
  w = _WORKDIR.value
  path = os.path.join(w, "config.json")
  if not os.path.exists(path):
    sys.exit(f"error: {path} does not exist: not a run's workdir")
  cfg = config_lib.from_config_dict(ml_collections.ConfigDict(json.load(open(path))))
  trainer = train.Trainer(cfg)
  ck = ckpt_lib.Checkpointer(w, cfg.train.keep_checkpoints)
  step = _STEP.value if _STEP.value is not None else ck.latest_step()
  if step is None:
    sys.exit(f"error: no checkpoint in {w}/checkpoints")
  state, _ = ck.restore(step, trainer.abstract_state)
  ck.close()
  trn, test = train.load_data(cfg)
  scalars = evaluate.evaluate(state.params, trainer.decode_all, test, cfg.data.identities,
                              judges=train.get_judges(cfg, trn, test))
  final = {"step": step, **scalars}
  with open(os.path.join(w, "eval.json"), "w") as f:
    json.dump(final, f, indent=2, sort_keys=True)
  tracking.Tracker(w, {}, mode="disabled", project="").log(step, scalars)
  print(" ".join(f"{k}={v:.4g}" for k, v in sorted(final.items()) if k.count("/") <= 1))


if __name__ == "__main__":
  app.run(main)
