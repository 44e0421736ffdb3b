import jax
import pytest

from encdec_jax import assemble, describe, models
from experiments import flops
from experiments.configs import liae, original


def test_original_forward_flops_match_analytic_count():
  cfg = assemble.checked_config(original.get_config("tiny"))
  d = describe.describe(cfg)
  analytic = flops.analytic_forward_flops(cfg.model)  # tiny uses conv_impl=xla: no padding taps
  assert d.forward_flops_per_image == pytest.approx(analytic, rel=0.10)
  assert [s.name for s in d.stages] == ["encode", "decode[0]", "decode[1]"]
  # The step is ~3x the forward of every image (forward + backward), plus the loss and Adam.
  n_img = cfg.train.batch_size * cfg.data.identities
  assert 2.5 < d.step_flops / (n_img * d.forward_flops_per_image) < 4.0
  assert d.step_memory["total"] > d.step_memory["arguments"] > 0


def test_liae_parts_and_table():
  cfg = assemble.checked_config(liae.get_config("tiny"))
  d = describe.describe(cfg)
  assert set(d.params) == {"encoder", "inter_all", "inters_0", "decoder"}
  names = [s.name for s in d.stages]
  assert names == ["encode", "code[0]", "code[1]", "decode[0]", "decode[1]"]
  code = {s.name: s for s in d.stages}
  # identity 1's code runs inter_1 and inter_all; identity 0's only inter_all: twice the FLOPs.
  assert code["code[1]"].flops_per_image == pytest.approx(2 * code["code[0]"].flops_per_image, rel=0.05)
  total = sum(x.size for x in jax.tree.leaves(jax.eval_shape(
      models.build_model(cfg.model).init, jax.random.key(0),
      jax.ShapeDtypeStruct((2, 1, 16, 16, 3), "float32"))))
  assert sum(d.params.values()) == total
  text = describe.format_description(d, cfg)
  assert "| inter_all |" in text and "train step memory:" in text
