"""config.train.init_from (encdec_jax/warm_start.py): a run starts from another run's encoder and
the decoders of the identities both have, by name; the source is named in the run's folder and in
every swap's provenance; a source that does not fit fails before any data is made."""
import json

import jax
import numpy as np
import pytest

from encdec_jax import assemble, members, train, warm_start
from encdec_jax.program import Trainer


@pytest.fixture(scope="module")
def source(tmp_path_factory, data_dir):
  """A tiny run of family 0's identities 0 and 1, trained 2 steps: (workdir, its params)."""
  from encdec_jax import config as config_lib
  from experiments.configs import original
  from tests.helpers import restored_state
  w = str(tmp_path_factory.mktemp("src") / "src")
  c = config_lib.override(original.get_config("tiny"), {"data.dir": data_dir, "train.steps": 2,
                                                        "eval.judges": False})
  train.train_and_evaluate(c, w, progress=False)
  return w, jax.tree.map(np.asarray, restored_state(c, w, 2).params["params"])


def _params(state_params):
  return jax.tree.map(np.asarray, jax.device_get(state_params))["params"]


def _equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_run_takes_the_encoder_and_the_decoders_of_shared_identities(source, tiny_config):
  """Three identities from a two-identity source: encoder and decoders 0, 1 are the source's,
  decoder 2 is this run's own initialisation; the same in a group whose other member starts fresh."""
  path, src = source
  cfg = assemble.checked_config(tiny_config(**{"data.identities": 3, "train.init_from": path}))
  w = warm_start.load(cfg)
  assert w.record["decoders"] == {"synthetic_faces/family0/0": 0, "synthetic_faces/family0/1": 1}
  assert w.record["fresh_decoders"] == ["synthetic_faces/family0/2"] and w.record["step"] == 2
  tr = Trainer(cfg)
  got, fresh = _params(tr.init([w]).params), _params(tr.init().params)
  assert _equal(got["encoder"], src["encoder"]) and not _equal(fresh["encoder"], src["encoder"])
  assert _equal(got["decoders_0"], src["decoders_0"]) and _equal(got["decoders_1"], src["decoders_1"])
  assert _equal(got["decoders_2"], fresh["decoders_2"])
  # Members: one starts from the source, one (another seed) from scratch.
  a = assemble.checked_config(tiny_config(**{"train.init_from": path}))
  b = assemble.checked_config(tiny_config(**{"seed": 1}))
  g = members.Group([a, b])
  state = g.init([warm_start.load(a), None])
  m0, m1 = _params(g.member_state(state, 0).params), _params(g.member_state(state, 1).params)
  assert _equal(m0, src)
  assert _equal(m1, _params(Trainer(b).init().params))


def test_another_family_matches_no_decoder(source, tiny_config):
  """Family 1's identity 0 is another face than family 0's: only the encoder is taken."""
  cfg = assemble.checked_config(tiny_config(**{"data.seed": 1, "train.init_from": source[0]}))
  w = warm_start.load(cfg)
  assert w.record["decoders"] == {} and len(w.record["fresh_decoders"]) == 2
  assert "the decoders of no identity" in warm_start.describe(w)


def test_another_bottleneck_starts_only_the_weights_it_sizes_fresh(source, tiny_config, monkeypatch):
  """Bottleneck 8 from a source at 32 (a sweep's bottleneck axis over one pretrained encoder): the
  Dense into the code and the kernel out of it keep the run's own initialisation, every other
  weight is the source's; alone and as a member padded beside a member at 32; loaded for a
  group's members, the source read once."""
  path, src = source
  cfg = assemble.checked_config(tiny_config(**{"model.bottleneck": 8, "train.init_from": path}))
  w = warm_start.load(cfg)
  fresh = w.record["fresh_weights"]
  assert fresh == sorted(fresh) and len(fresh) == 3 and all(f.startswith("['encoder']") for f in fresh)
  assert "3 weights sized by the bottleneck start fresh" in warm_start.describe(w)
  own = _params(Trainer(cfg).init().params)
  got = _params(Trainer(cfg).init([w]).params)
  flat = lambda t: {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  g, o, s = flat(got), flat(own), flat(src)
  assert set(g) == set(s)
  for k in g:
    if k in fresh:
      assert g[k].shape != s[k].shape and np.array_equal(g[k], o[k]), k
    else:
      assert np.array_equal(g[k], s[k]), k
  grp = members.Group([cfg, assemble.checked_config(tiny_config(**{"train.init_from": path}))])
  state = grp.init([w, warm_start.load(grp.cfgs[1])])
  assert _equal(_params(grp.member_state(state, 0).params), got)
  assert _equal(_params(grp.member_state(state, 1).params), src)
  # A sweep's members (as train_runs loads them): the source read once, each member's Source as
  # load gives it alone.
  reads = []
  monkeypatch.setattr(warm_start, "_read", lambda p, read=warm_start._read: reads.append(p) or read(p))
  both = warm_start.load_all([cfg, grp.cfgs[1], cfg, assemble.checked_config(tiny_config())])
  assert reads == [path] and both[3] is None
  for one, alone in zip(both, (w, warm_start.load(grp.cfgs[1]), w)):
    assert one.record == alone.record and one.fresh == alone.fresh
    assert _equal((one.encoder, one.decoders), (alone.encoder, alone.decoders))


def test_a_source_that_does_not_fit_is_named_before_any_data(source, tiny_config, tmp_path):
  bad = assemble.checked_config(tiny_config(**{"model.bottleneck": 8, "model.width": 1 / 8,
                                               "train.init_from": source[0]}))
  with pytest.raises(warm_start.WarmStartError, match=r"encoder\[.*\] is \(.*\) there and \(.*\) here") as e:
    warm_start.load(bad)
  assert "source: original, bottleneck 32" in str(e.value) and "this run: original, bottleneck 8" in str(e.value)
  other_input = assemble.checked_config(tiny_config(**{"model.input_norm": "contrast_only",
                                                       "train.init_from": source[0]}))
  with pytest.raises(warm_start.WarmStartError, match="reads model.input_norm='none', this run's 'contrast_only'"):
    warm_start.load(other_input)  # the same shapes, other inputs
  nowhere = tiny_config(**{"train.init_from": str(tmp_path / "nope")})
  with pytest.raises(warm_start.WarmStartError, match="no config.json there; it must be a run's workdir"):
    train.train_and_evaluate(nowhere, str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run" / "config.json").exists()


def test_the_source_is_recorded_and_in_every_swaps_provenance(source, tiny_config, tmp_path):
  import shutil
  from encdec_jax import inference
  path = str(tmp_path / "src")  # a copy of the source, removed once the run has started from it
  shutil.copytree(source[0], path)
  w = str(tmp_path / "tuned")
  c = tiny_config(**{"train.steps": 2, "train.init_from": path, "eval.judges": False})
  train.train_and_evaluate(c, w, progress=False)
  record = json.load(open(f"{w}/init_from.json"))
  assert record["run"] == "src" and record["step"] == 2 and len(record["decoders"]) == 2
  assert path not in json.dumps(record)  # a name and a hash, never a local path
  prov = inference.load_run(w).provenance()
  assert prov["init_from"] == {k: record[k] for k in ("run", "config_sha256", "step")}
  assert json.load(open(f"{w}/config.json"))["train"]["init_from"] == path
  # Started once, the run never reads its source again: run again without it, it resumes from its
  # own checkpoint (here: finished, evaluated again).
  shutil.rmtree(path)
  assert train.train_and_evaluate(c, w, progress=False)["step"] == 2
  assert json.load(open(f"{w}/init_from.json")) == record
