"""Evaluate a run's latest (or a given) checkpoint: python -m experiments.evaluate --workdir=W

Reads W/config.json, restores the checkpoint, and writes the metrics (reconstruction, ground-truth
swaps where the data has them, and the judges' identity transfer, leakage and pose/expression
error) to W/eval.json, W/metrics.jsonl and, if the run used it, W&B. Prints the judges' accuracy.
"""
import sys

from absl import flags

from experiments import _cli

_WORKDIR = flags.DEFINE_string("workdir", None, "a run's workdir", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")


def main(argv):
  del argv
  _cli.start()
  from encdec_jax import checkpoint as ckpt_lib, config as config_lib, evaluate, inference, judge_cache, probes
  from encdec_jax.decode import make_decode_all
  from encdec_jax.data.loading import load_data, own_crops_fn
  from encdec_jax.workdir import RunFolder, WorkdirBusy, saved_config
  w = _WORKDIR.value
  try:
    run = inference.load_run(w, _STEP.value)
    cfg, step = run.cfg, run.step
    folder = RunFolder(w, saved_config(w), cfg)
    with folder.lock():  # not beside a training of this run: both would write its files
      trn, test = load_data(cfg)
      j = judge_cache.for_config(cfg, trn, test)
      shifts = inference.colour_shifts(run, trn, reuse=False)  # this evaluation computes its own
      samples: dict = {}
      scalars = evaluate.evaluate(run.params, make_decode_all(run.model), test,
                                  cfg.data.identities, judges=j,
                                  probes=probes.for_run(run.model, trn, test, cfg.data.identities, j),
                                  shifts=shifts, samples=samples, face_type=cfg.data.face_type,
                                  ideal=own_crops_fn(cfg), code=inference.code_stats(run, trn))
      final = {"step": step, **scalars}
      shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(final.items()) if k.count("/") <= 1)
      try:  # this step's evaluation replaces the one in metrics.jsonl instead of adding another
        folder.drop_metrics_after(2 ** 62, drop_eval_at=step)
        folder.open_tracker(mode="disabled")
        folder.write_eval(final, samples)
        if shifts is not None:
          folder.write_tone(step, shifts)
      except OSError as e:
        print(shown)
        sys.exit(f"error: the metrics above could not be written to {w}: {e.strerror or e}")
      finally:
        folder.close()
  except (FileNotFoundError, ckpt_lib.CheckpointError, config_lib.ConfigError, WorkdirBusy) as e:
    sys.exit(f"error: {e}")
  print(shown)


if __name__ == "__main__":
  _cli.run(main)
