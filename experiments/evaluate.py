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
  from encdec_jax import hostmem
  hostmem.tune_malloc()  # XLA:CPU step buffers stay in the heap (encdec_jax/hostmem.py)
  logging.set_verbosity(logging.ERROR)
  from encdec_jax import checkpoint as ckpt_lib, config as config_lib, evaluate, inference, judges, tracking
  from encdec_jax.data.loading import load_data
  w = _WORKDIR.value
  try:
    run = inference.load_run(w, _STEP.value)
  except (FileNotFoundError, ckpt_lib.CheckpointError, config_lib.ConfigError) as e:
    sys.exit(f"error: {e}")
  cfg, step = run.cfg, run.step
  decode_all = evaluate.make_decode_all(run.model)
  try:
    trn, test = load_data(cfg)
  except config_lib.ConfigError as e:
    sys.exit(f"error: {e}")
  scalars = evaluate.evaluate(run.params, decode_all, test, cfg.data.identities,
                              judges=judges.for_config(cfg, trn, test))
  final = {"step": step, **scalars}
  try:
    with open(os.path.join(w, "eval.json"), "w") as f:
      json.dump(final, f, indent=2, sort_keys=True)
    # Replaces this step's evaluation in metrics.jsonl instead of adding another one.
    tracking.truncate_jsonl(os.path.join(w, "metrics.jsonl"), 2 ** 62, drop_eval_at=step)
    tracking.Tracker(w, {}, mode="disabled", project="").log(step, scalars)
  except OSError as e:
    print(" ".join(f"{k}={v:.4g}" for k, v in sorted(final.items()) if k.count("/") <= 1))
    sys.exit(f"error: the metrics above could not be written to {w}: {e.strerror or e}")
  print(" ".join(f"{k}={v:.4g}" for k, v in sorted(final.items()) if k.count("/") <= 1))


if __name__ == "__main__":
  app.run(main)
