"""The shipped sweep YAMLs and `make recipe`: every run of every YAML a valid config, the default
sweep's axes and metric, the recipe's two stages wired to each other (no training here)."""
import itertools
import os
import subprocess

import pytest

from encdec_jax import config as config_lib, sweep
from experiments.configs import original

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "experiments", "sweeps", "default.yaml")

def test_default_yaml_grid_is_enumerated_by_the_sweeps_engine():
  spec = sweep.load_sweep(DEFAULT)
  runs = sweep.enumerate_runs(spec)
  values = {k: v["values"] if "values" in v else [v["value"]] for k, v in spec["parameters"].items()}
  want = [dict(zip(values, combo)) for combo in itertools.product(*values.values())]
  key = lambda d: sorted((k, str(v)) for k, v in d.items())
  assert sorted(map(key, runs)) == sorted(map(key, want))
  # The mission's axes, each with two or more settings, and seeds for the spread.
  assert all(len(values[k]) >= 2 for k in ("config.model.bottleneck", "config.loss", "config.seed"))
  assert sweep.base_config_arg(spec) == "experiments/configs/original.py:small"
  # It ranks by the swaps' expression error, a headline column of the report (which ranks by the
  # YAML's metric, as a W&B agent's sweep does).
  from encdec_jax import metrics
  assert spec["metric"] == {"name": "eval/expr_mae", "goal": "minimize"}
  assert ("expr_mae", "lower") in metrics.HEADLINE


@pytest.mark.parametrize("target,family,bottleneck", [("recipe", 0, None), ("recipe", 1, None),
                                                     ("recipe", 1, 16), ("sweep", 0, None), ("sweep", 1, None)])
def test_make_starts_stage_two_from_stage_one_on_the_same_family(target, family, bottleneck):
  """`make recipe` and `make sweep`: stage 1 (8 identities; one folder for both targets) trains
  into the folder stage 2's train.init_from reads, both on the family's data (data.seed) and data
  dir; the recipe's stage 2 at stage 1's bottleneck (BOTTLENECK=k: both stages at k, in folders
  of their own), the sweep's over its bottleneck axis; each stage's config is valid."""
  import shlex
  from encdec_jax.assemble import checked_config
  env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
  args = ["make", "-n", target, f"FAMILY={family}", "DATA=/data/x"] + ([f"BOTTLENECK={bottleneck}"] if bottleneck else [])
  out = subprocess.run(args, cwd=ROOT, env=env,
                       capture_output=True, text=True, check=True).stdout.replace("\\\n", " ")
  train = next(shlex.split(ln) for ln in out.splitlines() if "experiments.train" in ln)
  stage2 = next(shlex.split(ln) for ln in out.splitlines() if "experiments.sweep" in ln)
  flag = lambda args, name: next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))  # noqa: E731
  from experiments._cli import parse_set  # how the CLIs read a value: as YAML
  sets = parse_set([stage2[k + 1] for k, a in enumerate(stage2) if a == "--set"])
  overrides = parse_set([a[2:] for a in train if a.startswith("--config.")])
  assert sets["config.train.init_from"] == flag(train, "workdir")
  assert sets["config.data.seed"] == family == overrides["config.data.seed"]
  assert sets["config.data.dir"] == overrides["config.data.dir"] == "/data/x"
  cfg = checked_config(config_lib.override(sweep.load_config(os.path.join(ROOT, flag(train, "config"))),
                                           overrides))
  assert cfg.data.identities == 8 and not cfg.eval.judges
  yaml_path = flag(stage2, "sweep") if target == "recipe" else DEFAULT
  assert (target == "sweep") == ("--sweep" not in " ".join(stage2))  # the sweep: the default YAML
  spec = sweep.load_sweep(os.path.join(ROOT, yaml_path))
  base = sweep.load_config(os.path.join(ROOT, sweep.base_config_arg(spec)))
  runs = [checked_config(config_lib.override(base, {**r, **sets})) for r in sweep.enumerate_runs(spec)]
  assert all(r.data.identities == 2 and r.train.init_from == flag(train, "workdir") for r in runs)
  assert {r.model.input_norm for r in runs} == {cfg.model.input_norm} == {"contrast"}  # warm_start's
  # Stage 1's training split renders the pair's training faces as stage 2's does (identities 0 and
  # 1 are the same images); it holds out fewer faces (its evaluation is not the sweep's).
  same = lambda c: (c.data.seed, c.data.resolution, c.data.train_per_identity, c.data.frame_side, c.data.face_type)  # noqa: E731
  assert all(same(r) == same(cfg) for r in runs) and cfg.data.test_per_identity < runs[0].data.test_per_identity
  assert cfg.model.bottleneck == (bottleneck or 128)
  suffix = f"_b{bottleneck}" if bottleneck else ""  # the default's folders keep their names
  assert flag(train, "workdir").endswith(f"pretrain8{'_s1' if family else ''}{suffix}")  # each apart
  if target == "recipe":
    assert {r.model.bottleneck for r in runs} == {cfg.model.bottleneck}
    assert flag(stage2, "workdir") == f"sweeps_out/recipe_family{family}{suffix}"
  else:  # the bottleneck axis over one stage 1 (warm_start: the weights it sizes start fresh)
    assert {r.model.bottleneck for r in runs} == {16, 128}
    assert flag(stage2, "workdir") == "sweeps_out/default" + (f"_family{family}" if family else "")


@pytest.mark.parametrize("target", ["sweep", "recipe"])
def test_make_refuses_a_family_set_through_args(target):
  """`ARGS='--set data.seed=1'` would train stage 2 on family 1 from family 0's stage 1: make stops
  before anything runs and names FAMILY=N."""
  env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
  out = subprocess.run(["make", "-n", target, "ARGS=--set data.seed=1"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
  assert out.returncode != 0 and "experiments.train" not in out.stdout
  assert "set the family with FAMILY=N" in out.stderr


def test_losses_yaml_specs_all_parse():
  from encdec_jax import losses
  spec = sweep.load_sweep(os.path.join(ROOT, "experiments", "sweeps", "losses.yaml"))
  runs = sweep.enumerate_runs(spec)
  assert len(runs) == 6
  for r in runs:
    losses.parse_loss_spec(r["config.loss"])


def test_archs_yaml_every_run_validates():
  """The architecture is sweepable: every run of archs.yaml gives a valid config (no compile)."""
  from encdec_jax import assemble, models
  spec = sweep.load_sweep(os.path.join(ROOT, "experiments", "sweeps", "archs.yaml"))
  runs = sweep.enumerate_runs(spec)
  assert {r["config.model.arch"] for r in runs} == set(models.ARCHITECTURES)
  for r in runs:
    cfg = assemble.checked_config(config_lib.override(original.get_config("small"), r))
    assert cfg.model.arch == r["config.model.arch"]


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "experiments", "sweeps"))
                                        if f.endswith(".yaml")))
def test_every_shipped_sweep_yaml_gives_valid_configs(name):
  """A BENCHMARKS row's YAML must run as shipped: every run's config validates (no compile)."""
  from encdec_jax import assemble
  spec = sweep.load_sweep(os.path.join(ROOT, "experiments", "sweeps", name))
  runs = sweep.enumerate_runs(spec)
  assert runs
  base = sweep.base_config_arg(spec)
  path, _, variant = base.partition(":")
  assert path == "experiments/configs/original.py", base
  for r in runs:
    cfg = assemble.checked_config(config_lib.override(original.get_config(variant or None), r))
    for k, v in r.items():
      got = cfg
      for part in k.split(".")[1:]:
        got = getattr(got, part)
      assert got == v, (name, k, got, v)
