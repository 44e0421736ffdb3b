import pytest

from encdec_jax import config as config_lib
from experiments.configs import original


@pytest.mark.parametrize("variant", ["full", "small", "tiny"])
def test_variants_validate(variant):
  cfg = config_lib.from_config_dict(original.get_config(variant))
  assert cfg.model.resolution == cfg.data.resolution
  assert cfg.model.num_identities == cfg.data.identities


@pytest.mark.parametrize("field,value,match", [
    ("model.arch", "resnet", r"config.model.arch='resnet'.*valid: \['df', 'dfaker', 'iae', 'liae', "
                             r"'lightweight', 'original'\]"),
    ("model.bottleneck", 0, r"config.model.bottleneck=0; must be > 0"),
    ("data.resolution", 24, r"arch='original' needs data.resolution to be a positive multiple of 16.*got 24"),
    ("model.upscale", "bicubic", r"config.model.upscale='bicubic'; valid: \['resize', 'shuffle'\]"),
    ("data.identities", 1, r"config.data.identities=1; need at least 2"),
    ("loss", "mae:1,foo:2", r"config.loss: unknown loss 'foo'"),
    ("wandb.mode", "cloud", r"config.wandb.mode='cloud'.*offline"),
    ("model.conv_impl", "fft", r"config.model.conv_impl='fft'"),
    ("data.augment_on", "gpu", r"config.data.augment_on='gpu'; valid: \['auto', 'device', 'host'\]"),
    ("train.batch_size", 1000, r"train_per_identity=64 is smaller than config.train.batch_size=1000"),
])
def test_bad_values_name_the_field(field, value, match):
  c = original.get_config("tiny")
  section, _, key = field.rpartition(".")
  with c.unlocked():
    (c[section] if section else c)[key] = value
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.from_config_dict(c)


def test_unknown_key_lists_valid_keys():
  c = original.get_config("tiny")
  with c.unlocked():
    c.model.bottlenek = 3
  with pytest.raises(config_lib.ConfigError, match=r"model.bottlenek.*valid keys in 'model'.*bottleneck"):
    config_lib.from_config_dict(c)


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
    config_lib.from_config_dict(c)


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
