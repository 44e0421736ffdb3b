import glob
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from encdec_jax import assemble
from encdec_jax import config as config_lib, train
from encdec_jax.data import device_augment
from encdec_jax.data.pipeline import Augment, TrainSource
from encdec_jax.program import Trainer
from tests.helpers import read_jsonl, restored_state, train_steps


@pytest.fixture
def trainer_and_source(tiny_config, tiny_data):
  cfg = assemble.checked_config(tiny_config())
  trn, _ = tiny_data
  src = TrainSource(trn["image"], trn["mask"], trn["identity"], 2, cfg.train.batch_size, cfg.seed,
                    Augment.from_config(cfg.data))
  return Trainer(cfg), src


def test_golden_first_step_and_single_compile(trainer_and_source):
  tr, src = trainer_and_source
  state = tr.init()
  kernel = lambda s: np.asarray(s.params["params"]["decoders_0"]["to_rgb"]["kernel"])
  before = kernel(state)
  state, m = tr.step_fn(state, tr.device_batch(src.batch(0)))
  # Golden values of the tiny config (seed 0). They change, legitimately, when the model, its
  # initialisation, the data renderer, the augmentation, the loss or the optimizer change:
  # re-derive them then with `pytest tests/train_test.py -k golden`, whose failure prints them.
  got = (float(m["train/loss"]), float(m["train/grad_norm"]), float(kernel(state).ravel()[:8].sum()))
  want = (0.34925562143325806, 0.15252141654491425, 0.541548490524292)  # synthetic_faces 3.0.0
  for g, w, rtol in zip(got, want, (2e-4, 2e-3, 1e-5)):
    np.testing.assert_allclose(g, w, rtol=rtol, err_msg=f"now {got!r}")
  # Adam's first step moves every parameter with a gradient by lr (bias-corrected m / sqrt(v) = +-1).
  np.testing.assert_allclose(np.abs(kernel(state) - before).max(), 1e-3, rtol=1e-3)
  for step in range(1, 4):
    state, m = tr.step_fn(state, tr.device_batch(src.batch(step)))
  assert int(state.step) == 4
  assert tr.step_fn._cache_size() == 1  # compiled once, no retracing as steps go by
  # data.augment_on: "auto" keeps the numpy pipeline on a CPU; a raw batch (uint8 + draws) is
  # augmented on the devices into the same batch.
  assert not tr.augment_on_device and device_augment.on_device("device", jax.devices())
  host, dev = tr.device_batch(src.batch(7)), tr.device_batch(src.raw_batch(7))
  assert sorted(dev) == sorted(host)
  for k in host:
    assert dev[k].sharding == host[k].sharding
    np.testing.assert_allclose(np.asarray(dev[k]), np.asarray(host[k]), atol=2e-5)


def test_tiny_model_learns_and_writes_outputs(tiny_config, tmp_path):
  c = tiny_config(**{"train.steps": 300, "train.log_every": 10, "train.preview_every": 300,
                     "train.checkpoint_every": 100, "wandb.mode": "offline"})
  final = train.train_and_evaluate(c, str(tmp_path), progress=False)
  rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert [r["step"] for r in rows if "train/loss" in r] == list(range(10, 301, 10))
  # Measured: ~0.33 over steps 10-30, ~0.22 over steps 280-300 (sum of 2 identities' MAE).
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
  assert final["eval/recon_mae"] < 0.13, final
  assert final["step"] == 300
  assert json.load(open(tmp_path / "eval.json"))["eval/swap_mae"] == pytest.approx(final["eval/swap_mae"])
  png = Image.open(tmp_path / "previews" / "step_0000300.png")
  assert png.info["encdec_jax:synthetic"] == "true" and "encdec_jax" in png.info["Software"]
  assert sorted(os.listdir(tmp_path / "checkpoints"))[-1] == "300"
  assert glob.glob(str(tmp_path / "wandb" / "offline-run-*"))  # W&B wrote its offline run


def _restore_params(c, workdir, step):
  return restored_state(c, workdir, step).params


def test_stop_and_resume_equals_uninterrupted(tiny_config, tmp_path):
  a, b = str(tmp_path / "interrupted"), str(tmp_path / "straight")
  train.train_and_evaluate(tiny_config(**{"train.steps": 10}), a, progress=False)
  assert read_jsonl(os.path.join(a, "metrics.jsonl"))[-1]["step"] == 10
  # A step past the last checkpoint must be replayed, not double counted.
  with open(os.path.join(a, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({"step": 15, "train/loss": -1.0}) + "\n")
  train.train_and_evaluate(tiny_config(**{"train.steps": 20}), a, progress=False)
  train.train_and_evaluate(tiny_config(**{"train.steps": 20}), b, progress=False)
  steps = [r["step"] for r in read_jsonl(os.path.join(a, "metrics.jsonl")) if "train/loss" in r]
  assert steps == [5, 10, 15, 20]
  pa, pb = _restore_params(tiny_config(), a, 20), _restore_params(tiny_config(), b, 20)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_an_ema_run_resumes_exactly_and_is_used_with_its_average(tiny_config, tmp_path, monkeypatch):
  """train.ema: the average is in the checkpoint (a resumed run's whole state equals an
  uninterrupted one's), the evaluation reads it, restore_params returns it, and a run started
  from it (init_from) starts both its params and its own average there."""
  from encdec_jax import warm_start
  c = lambda steps, **kw: tiny_config(**{"train.steps": steps, "train.ema": 0.9,  # noqa: E731
                                         "train.checkpoint_every": 5, **kw})
  a, b = str(tmp_path / "interrupted"), str(tmp_path / "straight")
  train.train_and_evaluate(c(10), a, progress=False)
  train.train_and_evaluate(c(20), a, progress=False)
  seen, real = [], train.eval_lib.evaluate
  monkeypatch.setattr(train.eval_lib, "evaluate",
                      lambda params, *x, **k: (seen.append(jax.device_get(params)), real(params, *x, **k))[1])
  train.train_and_evaluate(c(20), b, progress=False)
  sa, sb = restored_state(c(20), a, 20), restored_state(c(20), b, 20)
  assert len(jax.tree.leaves(sa)) == len(jax.tree.leaves(sb)) > 2 * len(jax.tree.leaves(sb.params))
  for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  leaves = lambda t: [np.asarray(x) for x in jax.tree.leaves(t)]  # noqa: E731
  assert any(not np.array_equal(p, e) for p, e in zip(leaves(sb.params), leaves(sb.ema)))
  restored, _ = assemble.restore_params(assemble.assemble(assemble.checked_config(c(20))), b)
  for got in (seen[-1], restored):
    for x, y in zip(leaves(got), leaves(sb.ema)):
      np.testing.assert_array_equal(x, y)
  cw = assemble.checked_config(c(20, **{"train.init_from": b}))
  s0 = Trainer(cw).init(warm_start.load_all([cw]))
  for name in ("encoder", "decoders_0", "decoders_1"):
    for p, e, want in zip(leaves(s0.params["params"][name]), leaves(s0.ema["params"][name]),
                          leaves(sb.ema["params"][name])):
      np.testing.assert_array_equal(p, want)
      np.testing.assert_array_equal(e, want)


def test_workdir_with_another_config_is_refused(tiny_config, tmp_path, monkeypatch):
  train.train_and_evaluate(tiny_config(**{"train.steps": 2}), str(tmp_path), progress=False)
  with pytest.raises(config_lib.ConfigError, match=r"model.bottleneck \(32 -> 64\)"):
    train.train_and_evaluate(tiny_config(**{"model.bottleneck": 64}), str(tmp_path), progress=False)
  # Logging and saving cadence may change on resume: they do not change what is computed.
  c = tiny_config(**{"train.steps": 4, "train.log_every": 1})
  final = train.train_and_evaluate(c, str(tmp_path), progress=False)
  assert final["step"] == 4
  # The finished run again: its eval.json stands, nothing is built, trained or evaluated...
  mtime = os.path.getmtime(tmp_path / "eval.json")

  class Built(Exception):
    pass
  monkeypatch.setattr(train, "_program", lambda cfgs: (_ for _ in ()).throw(Built()))
  again = train.train_and_evaluate(c, str(tmp_path), progress=False)
  assert again == json.load(open(tmp_path / "eval.json")) and again["step"] == 4
  assert again["eval/swap_mae"] == pytest.approx(final["eval/swap_mae"])
  assert os.path.getmtime(tmp_path / "eval.json") == mtime
  # ... but other eval settings (free to change on a resume) evaluate it again, as do more steps.
  for other in ({"eval.tone": "train"}, {"train.steps": 6}):
    with pytest.raises(Built):
      train.train_and_evaluate(tiny_config(**{"train.steps": 4, "train.log_every": 1, **other}),
                               str(tmp_path), progress=False)


def test_finished_eval_needs_the_last_step_and_the_same_eval_settings(tmp_path):
  from encdec_jax import workdir as wd
  cfg = {"train": {"steps": 4, "lr": 0.001}, "eval": {"tone": "none", "every": 0}, "wandb": {"mode": "offline"}}
  assert wd.finished_eval(str(tmp_path), cfg) is None  # nothing there
  wd.write_json(str(tmp_path / "config.json"), cfg)
  assert wd.finished_eval(str(tmp_path), cfg) is None  # no eval.json: not finished
  (tmp_path / "eval.json").write_text(json.dumps({"step": 4, "eval/swap_mae": 0.1}))
  assert wd.finished_eval(str(tmp_path), cfg) == {"step": 4, "eval/swap_mae": 0.1}
  assert wd.finished_eval(str(tmp_path), {**cfg, "wandb": {"mode": "online"}}) is not None  # not computed
  for changed in ({"eval": {"tone": "train", "every": 0}}, {"train": {"steps": 8, "lr": 0.001}},
                  {"train": {"steps": 4, "lr": 0.01}}):
    assert wd.finished_eval(str(tmp_path), {**cfg, **changed}) is None, changed
  (tmp_path / "eval.json").write_text(json.dumps({"step": 2}))  # an earlier, shorter run's
  assert wd.finished_eval(str(tmp_path), cfg) is None


def test_warmdown_scales_adams_update_by_the_steps_learning_rate():
  """train.warmdown: lr constant, then falling linearly to 0 over the last fraction of the steps;
  the update is Adam's at the constant lr times that factor, and the state's layout is Adam's."""
  import optax
  from encdec_jax.state import adam_update, lr_at
  lrs = lambda w: np.asarray([lr_at(i, 2.0, 10, w) for i in range(10)])
  np.testing.assert_allclose(lrs(0.0), 2.0)
  np.testing.assert_allclose(lrs(0.5), 2.0 * np.array([1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2]), rtol=1e-6)
  np.testing.assert_allclose(lrs(1.0), 2.0 * np.arange(10, 0, -1) / 10, rtol=1e-6)
  params = {"w": np.linspace(-1, 1, 6, dtype=np.float32)}
  grads = {"w": np.array([0.3, -2.0, 0.0, 1.0, 5.0, -0.1], np.float32)}
  tx = optax.adam(1e-3, b1=0.5, b2=0.999)
  state = tx.init(params)
  ref, ref_state = tx.update(grads, state, params)
  got, got_state = adam_update(grads, state, params, 8, 1e-3, 0.5, 0.999, 10, 0.5)
  np.testing.assert_allclose(got["w"], 0.4 * ref["w"], rtol=1e-5)
  assert jax.tree.structure(got_state) == jax.tree.structure(ref_state)
  np.testing.assert_allclose(jax.tree.leaves(got_state)[1], jax.tree.leaves(ref_state)[1])
  with pytest.raises(config_lib.ConfigError, match="train.warmdown=1.5"):
    assemble.checked_config(config_lib.override(config_lib.default_config_dict(), {"train.warmdown": 1.5}))


def test_clip_norm_is_optaxs_clip_by_global_norm_before_adam():
  """train.clip_norm: the update is optax's chain (clip_by_global_norm, adam) when the norm is
  longer than the clip, Adam's alone when shorter or when 0 (off); the state's layout is Adam's."""
  import optax
  from encdec_jax.state import adam_update
  params = {"a": np.linspace(-1, 1, 6, dtype=np.float32), "b": np.ones((2, 2), np.float32)}
  grads = {"a": np.array([0.3, -2.0, 0.0, 1.0, 5.0, -0.1], np.float32),
           "b": np.array([[1.0, -3.0], [0.5, 2.0]], np.float32)}  # global norm ~6.45
  adam = optax.adam(1e-3, b1=0.5, b2=0.999)
  state = adam.init(params)
  # Two steps, so the second moment sees the clipped gradient of the first.
  for clip in (0.0, 1.5, 100.0):
    ref_tx = optax.chain(optax.clip_by_global_norm(clip), adam) if clip else adam
    ref_state, got_state = ref_tx.init(params), state
    for k in range(2):
      g = jax.tree.map(lambda x: x * (1 + k), grads)
      ref, ref_state = ref_tx.update(g, ref_state, params)
      got, got_state = adam_update(g, got_state, params, k, 1e-3, 0.5, 0.999, 10, 0.0, clip)
      for n in params:
        np.testing.assert_allclose(got[n], ref[n], rtol=1e-5, err_msg=f"clip {clip}, step {k}, {n}")
    assert jax.tree.structure(got_state) == jax.tree.structure(state)
  unclipped, _ = adam_update(grads, state, params, 0, 1e-3, 0.5, 0.999, 10, 0.0, 0.0)
  clipped, _ = adam_update(grads, adam.update(grads, state, params)[1], params, 1, 1e-3, 0.5, 0.999, 10, 0.0, 1.5)
  assert not np.allclose(clipped["a"], unclipped["a"])  # the clip binds (the reference is not trivial)
  with pytest.raises(config_lib.ConfigError, match="train.clip_norm=-1"):
    assemble.checked_config(config_lib.override(config_lib.default_config_dict(), {"train.clip_norm": -1.0}))


def test_lr_scales_move_only_their_own_group():
  """train.critic_lr_scale / encoder_lr_scale: the critics' groups' Adam updates (the identity
  critic's and the realism critic's) are its scale x Adam's, the encoder's its own (0: frozen),
  every other group's is Adam's, the state is Adam's (one step's moments); traced scales
  (members) give the same; scales of 1 leave the update tree as it was."""
  import jax.numpy as jnp
  import optax
  from encdec_jax.state import adam_update
  params = {"params": {"encoder": {"w": np.linspace(-1, 1, 6, dtype=np.float32)},
                       "decoders_0": {"b": np.linspace(1, 2, 4, dtype=np.float32)},
                       "critic": {"Dense_0": {"kernel": np.ones((2, 3), np.float32)}},
                       "realism": {"Conv_0": {"bias": np.ones((2,), np.float32)}}}}
  grads = jax.tree.map(lambda p: np.cos(np.arange(p.size, dtype=np.float32) + 1).reshape(p.shape), params)
  adam = optax.adam(1e-3, b1=0.5, b2=0.999)
  state = adam.init(params)
  ref, ref_state = adam.update(grads, state, params)
  r = ref["params"]
  for critic, encoder in ((4.0, 0.0), (jnp.float32(4.0), jnp.float32(0.0)), (1.0, 0.25)):
    got, got_state = adam_update(grads, state, params, 0, 1e-3, 0.5, 0.999, 10, 0.0, 0.0, critic, encoder)
    g = got["params"]
    np.testing.assert_allclose(g["encoder"]["w"], float(encoder) * r["encoder"]["w"], rtol=1e-6)
    np.testing.assert_allclose(g["decoders_0"]["b"], r["decoders_0"]["b"], rtol=1e-6)
    np.testing.assert_allclose(g["critic"]["Dense_0"]["kernel"],
                               float(critic) * r["critic"]["Dense_0"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(g["realism"]["Conv_0"]["bias"],
                               float(critic) * r["realism"]["Conv_0"]["bias"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got_state), jax.tree.leaves(ref_state)):
      np.testing.assert_allclose(a, b, rtol=1e-6)
  same, _ = adam_update(grads, state, params, 0, 1e-3, 0.5, 0.999, 10, 0.0, 0.0, 1.0, 1.0)
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("members", [False, True], ids=["run", "members"])
def test_ema_averages_the_applied_updates_and_none_that_is_dropped(members):
  """train.ema: state.ema is decay x ema + (1 - decay) x params after every applied update, from
  the params it starts with; a dropped (non-finite) step moves neither. Members: each member's
  average moves with its own steps (member 1's NaN step leaves member 0's update applied).
  ema 0: no average in the state, the params as before."""
  import jax.numpy as jnp
  import optax
  from encdec_jax.state import AveragedTrainState, TrainState
  from encdec_jax.step import make_step
  decay, nan_at = 0.75, 2
  loss = lambda p, b, h: (jnp.sum((p["w"] - b) ** 2), {})  # noqa: E731
  upd = lambda g, o, p, h, i: optax.sgd(0.1).update(g, o, p)  # noqa: E731
  m = 2 if members else 1
  w0 = np.linspace(-1, 1, 3 * m, dtype=np.float32).reshape((m, 3) if members else (3,))
  targets = [np.full_like(w0, k + 1.0) for k in range(5)]
  if members:
    targets[nan_at][1] = np.nan  # member 1's step 2 only
  else:
    targets[nan_at][...] = np.nan

  def run(ema):
    step = jax.jit(make_step(loss, upd, "skip", members=members, ema=ema))
    n = jnp.zeros((m,) if members else (), jnp.int32)
    p = {"w": jnp.asarray(w0)}
    opt = jax.vmap(optax.sgd(0.1).init)(p) if members else optax.sgd(0.1).init(p)
    s = TrainState(step=n, params=p, opt_state=opt, nonfinite=n, first_nonfinite=n - 1)
    if ema:
      s = AveragedTrainState(**vars(s), ema={"w": jnp.asarray(w0)})
    for t in targets:
      s, _ = step(s, jnp.asarray(t), {})
    return s

  s = run(decay)
  # By hand: sgd on (w - t)^2 moves w by -0.2 (w - t); the average follows each applied step.
  w, avg = w0.copy(), w0.copy()
  for k, t in enumerate(targets):
    good = np.isfinite(t).all(axis=-1, keepdims=True)
    new = np.where(good, w - 0.2 * (w - t), w)
    avg = np.where(good, decay * avg + (1 - decay) * new, avg)
    w = new
  np.testing.assert_allclose(np.asarray(s.params["w"]), w, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(s.ema["w"]), avg, rtol=1e-6, atol=1e-6)
  assert not np.allclose(avg, w)  # the average lags: the check is not trivial
  assert list(np.ravel(s.nonfinite)) == ([0, 1] if members else [1])
  plain = run(0.0)
  assert type(plain) is TrainState
  np.testing.assert_array_equal(np.asarray(plain.params["w"]), np.asarray(s.params["w"]))
  with pytest.raises(config_lib.ConfigError, match=r"train.ema=1.0; must be in \[0, 1\)"):
    assemble.checked_config(config_lib.override(config_lib.default_config_dict(), {"train.ema": 1.0}))


def test_batch_not_divisible_by_devices(tiny_config):
  cfg = assemble.checked_config(tiny_config(**{"train.batch_size": 3}))
  with pytest.raises(config_lib.ConfigError, match="batch_size=3.*divisible by the 2 devices"):
    Trainer(cfg, devices=jax.devices() * 2)


def test_learned_mask_is_trained_against_the_face_mask(tiny_config, tiny_data):
  c = tiny_config(**{"model.learn_mask": True, "mask.enabled": True, "loss": "mae:1.0,ssim:0.5"})
  cfg = assemble.checked_config(c)
  tr = Trainer(cfg)
  trn, _ = tiny_data
  src = TrainSource(trn["image"], trn["mask"], trn["identity"], 2, cfg.train.batch_size, cfg.seed,
                    Augment.from_config(cfg.data))
  assert tr.batch_keys == ("inputs", "targets", "masks")
  state = tr.init()
  assert state.params["params"]["decoders_0"]["to_rgb"]["kernel"].shape[-1] == 4
  first = []
  for step in range(150):
    state, m = tr.step_fn(state, tr.device_batch(src.batch(step)))
    first.append(float(m["train/mask_mse"]))
  assert np.mean(first[-10:]) < 0.5 * np.mean(first[:10]), (first[:10], first[-10:])
  x = trn["image"][:4].astype(np.float32) / 255
  out = np.asarray(tr.decode_all(state.params, x))
  assert out.shape == (2, 4, 16, 16, 4)  # RGB and the learned mask
  # The convert blends inside the learned mask times the data's (feathered), not the data's alone.
  from encdec_jax import convert, decode
  got = decode.converted(x, out[1, ..., :3], out[1, ..., 3:], trn["mask"][:4])
  m = convert.feather(out[1, ..., 3:] * trn["mask"][:4, ..., :1].astype(np.float32) / 255)
  np.testing.assert_allclose(got, m * out[1, ..., :3] + (1 - m) * x, atol=1e-6)
  assert np.abs(got - decode.converted(x, out[1, ..., :3], None, trn["mask"][:4])).max() > 1e-3


def test_bf16_compute_trains_like_float32(tiny_config, tiny_data):
  """model.dtype=bfloat16: bf16 activations and matmuls, float32 params, Adam state, loss and
  output layer; the tiny model's loss after 150 steps stays within 5% of float32's."""
  trn, _ = tiny_data
  final = {}
  for dtype in ("float32", "bfloat16"):
    tr, state, losses = train_steps(tiny_config(**{"model.dtype": dtype}), trn, 150)
    assert losses.dtype == np.float32
    assert {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))} <= {np.dtype("float32"), np.dtype("int32")}
    x = np.zeros((2, 1, 16, 16, 3), np.float32)
    out = jax.eval_shape(lambda p: tr.model.apply(p, x), state.params)
    assert out.dtype == np.float32
    # The convs and matmuls really run in the configured dtype (not silently in float32).
    ops = str(jax.make_jaxpr(lambda p: tr.model.apply(p, x))(state.params))
    assert ("bf16[" in ops) == (dtype == "bfloat16"), dtype
    final[dtype] = float(np.mean(losses[-20:]))
  print(final)
  assert abs(final["bfloat16"] - final["float32"]) < 0.05 * final["float32"], final
