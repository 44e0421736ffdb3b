import pytest

from encdec_jax import assemble, config as config_lib
from experiments.configs import original


def test_config_files_say_only_what_they_change():
  """One source of defaults: original.py:full is the dataclasses' defaults, and every variant
  differs from them in exactly the fields its VARIANTS entry names."""
  import dataclasses
  assert assemble.checked_config(original.get_config("full")) == config_lib.ExperimentConfig()
  default = config_lib.flatten(dataclasses.asdict(config_lib.ExperimentConfig()))
  for variant, changes in original.VARIANTS.items():
    cfg = config_lib.flatten(dataclasses.asdict(assemble.checked_config(original.get_config(variant))))
    changed = {k for k in cfg if cfg[k] != default[k]} - set(config_lib.DERIVED)
    assert changed == set(changes), variant


def test_override_parses_numbers_and_refuses_unknown_fields():
  c = config_lib.override(original.get_config("tiny"), {"config.train.lr": "1e-4", "model.bottleneck": "12",
                                                        "train.b1": 0})
  assert (c.train.lr, c.model.bottleneck, c.train.b1) == (1e-4, 12, 0.0) and isinstance(c.train.b1, float)
  with pytest.raises(config_lib.ConfigError, match=r"modle.width: no section 'modle'; valid: \['data', 'eval'"):
    config_lib.override(c, {"modle.width": 1.0})
  with pytest.raises(config_lib.ConfigError, match=r"no field 'botleneck'.*'bottleneck'"):
    config_lib.override(c, {"config.model.botleneck": 7})


def test_a_saved_config_with_a_removed_field_still_loads():
  d = original.get_config("tiny").to_dict()
  d["eval"]["judge_steps"] = 400  # written by runs before it was removed
  assert assemble.checked_config(d) == assemble.checked_config(original.get_config("tiny"))


def test_conv_impl_auto_is_the_fast_form_of_the_platform():
  from encdec_jax import models
  assert models.resolve_conv_impl("auto", "cpu") == "im2col"
  assert models.resolve_conv_impl("auto", "gpu") == models.resolve_conv_impl("auto", "tpu") == "xla"
  assert models.resolve_conv_impl("s2d", "gpu") == "s2d"
  cfg = assemble.checked_config(original.get_config("full"))
  assert cfg.model.conv_impl == "auto"
  assert assemble.assemble(cfg, "gpu").model.cfg.conv_impl == "xla"
  assert assemble.assemble(cfg, "cpu").model.cfg.conv_impl == "im2col"


@pytest.mark.parametrize("field,value,match", [
    ("model.arch", "resnet", r"config.model.arch='resnet'.*valid: \['df', 'dfaker', 'iae', 'liae', "
                             r"'lightweight', 'original'\]"),
    ("model.bottleneck", 0, r"config.model.bottleneck=0; must be >= 1"),
    ("train.lr", -1.0, r"config.train.lr=-1.0; must be > 0"),
    ("train.nonfinite", "ignore", r"config.train.nonfinite='ignore'; valid: \['skip', 'stop'\]"),
    ("data.name", "celeba", r"config.data.name='celeba'; valid: \['arrays', 'folders', 'synthetic_faces'\]"),
    ("model.dtype", "float16", r"config.model.dtype='float16'; valid: \['bfloat16', 'float32'\]"),
    ("data.resolution", 24, r"arch='original' needs data.resolution to be a positive multiple of 16.*got 24"),
    ("model.upscale", "bicubic", r"config.model.upscale='bicubic'; valid: \['resize', 'shuffle'\]"),
    ("data.identities", 1, r"config.data.identities=1; need at least 2"),
    ("loss", "mae:1,foo:2", r"config.loss: unknown loss 'foo'"),
    ("wandb.mode", "cloud", r"config.wandb.mode='cloud'.*offline"),
    ("model.conv_impl", "fft", r"config.model.conv_impl='fft'"),
    ("data.augment_on", "gpu", r"config.data.augment_on='gpu'; valid: \['auto', 'device', 'host'\]"),
    ("train.batch_size", 1000, r"train_per_identity=64 is smaller than config.train.batch_size=1000"),
    ("seed", -1, r"config.seed=-1; must be in \[0, 2147483647\]"),
    ("seed", 2 ** 64 + 1, r"config.seed=18446744073709551617; must be in \[0, 2147483647\]"),
    ("data.seed", -1, r"config.data.seed=-1; must be in \[0, 2147483647\]"),
    ("model.critic_width", -1, r"config.model.critic_width=-1; must be >= 0"),
    ("model.realism_width", -2, r"config.model.realism_width=-2; must be >= 0"),
    ("train.critic_lr_scale", 0.0, r"config.train.critic_lr_scale=0.0; must be > 0"),
    ("train.encoder_lr_scale", -0.5, r"config.train.encoder_lr_scale=-0.5; must be >= 0"),
    ("loss", "mae,identity_adversary:0.1", r"'identity_adversary'.*config.model.critic_width=0 \(no critic\)"),
    ("loss", "mae,swap_realism:0.1", r"'swap_realism'.*config.model.realism_width=0 \(no critic\)"),
])
def test_bad_values_name_the_field(field, value, match):
  c = original.get_config("tiny")
  section, _, key = field.rpartition(".")
  with c.unlocked():
    (c[section] if section else c)[key] = value
  with pytest.raises(config_lib.ConfigError, match=match):
    assemble.checked_config(c)


def test_unknown_key_lists_valid_keys():
  c = original.get_config("tiny")
  with c.unlocked():
    c.model.bottlenek = 3
  with pytest.raises(config_lib.ConfigError, match=r"model.bottlenek.*valid keys in 'model'.*bottleneck"):
    assemble.checked_config(c)


def test_unknown_variant():
  with pytest.raises(ValueError, match="valid: 'full', 'small', 'tiny'"):
    original.get_config("huge")


@pytest.mark.parametrize("arch,resolution,match", [
    ("df", 72, r"arch='df' needs data.resolution to be a positive multiple of 16.*got 72"),
    ("liae", 8, r"arch='liae' needs data.resolution to be a positive multiple of 16.*got 8"),
    ("df", 512, r"arch='df' is defined up to resolution 256.*got data.resolution=512"),
    ("lightweight", 40, r"arch='lightweight' needs data.resolution.*multiple of 16.*got 40"),
])
def test_architecture_constraints_before_compiling(arch, resolution, match):
  c = original.get_config("tiny")
  c.model.arch, c.data.resolution = arch, resolution
  with pytest.raises(config_lib.ConfigError, match=match):
    assemble.checked_config(c)


def test_resume_with_a_field_added_since_means_its_default(tmp_path):
  """A run saved before data.augment_on existed resumes with the default, not with anything else."""
  import json
  from encdec_jax import workdir as workdir_lib
  new = original.get_config("tiny").to_dict()
  old = json.loads(json.dumps(new))
  del old["data"]["augment_on"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir_lib.check_workdir(str(tmp_path), new)  # "auto" is the default: accepted
  (tmp_path / "config.json").write_text(json.dumps(old))
  new["data"]["augment_on"] = "device"
  with pytest.raises(config_lib.ConfigError, match=r"data.augment_on \('auto' -> 'device'\)"):
    workdir_lib.check_workdir(str(tmp_path), new)
  # A run saved before face types trained on head shots that no face type brings back: refused.
  new = original.get_config("tiny").to_dict()
  for face_type in ("whole_face", "head"):
    old = json.loads(json.dumps(new))
    del old["data"]["face_type"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    new["data"]["face_type"] = face_type
    with pytest.raises(config_lib.ConfigError, match=r"data.face_type \('head shots, before face types"):
      workdir_lib.check_workdir(str(tmp_path), new)


def test_every_config_field_has_its_readme_line():
  """Adding a field is one edit in encdec_jax/config.py plus its README line: this keeps them together."""
  import dataclasses
  import os
  import re
  readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
  readme = readme.split("<summary>All config fields</summary>")[1].split("</details>")[0]
  listed = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", readme, re.M))
  fields = {"seed", "loss"} | {f"{s}.{f.name}" for s, cls in config_lib.SECTIONS.items()
                               for f in dataclasses.fields(cls)} - set(config_lib.DERIVED)
  assert fields - listed == set(), "config fields missing from the README's table"
  assert listed - fields == set(), "the README's table lists fields that do not exist"


def test_a_model_field_is_never_continued_but_the_dtype_may_be(tmp_path):
  """A workdir's checkpoint is one network's weights: another model field (here one that keeps
  every shape, model.input_norm "local" -> "contrast") is refused even with
  allow_config_change, naming the field and the ways out; the compute dtype keeps the network."""
  import json
  from encdec_jax import workdir as workdir_lib
  old = original.get_config("tiny").to_dict()
  old["model"]["input_norm"] = "local"
  (tmp_path / "config.json").write_text(json.dumps(old))
  new = json.loads(json.dumps(old))
  new["model"]["input_norm"] = "contrast"
  for allow in (False, True):
    with pytest.raises(config_lib.ConfigError,
                       match=r"another network.*model.input_norm \('local' -> 'contrast'\).*new --workdir.*init_from="):
      workdir_lib.check_workdir(str(tmp_path), new, allow_config_change=allow)
  new = json.loads(json.dumps(old))
  new["model"]["dtype"] = "bfloat16"
  with pytest.raises(config_lib.ConfigError, match=r"another config.*model.dtype.*--allow_config_change"):
    workdir_lib.check_workdir(str(tmp_path), new)
  assert workdir_lib.check_workdir(str(tmp_path), new, allow_config_change=True) == {
      "model.dtype": ["float32", "bfloat16"]}
