# make sweep [FAMILY=1]: set up .venv (first time only) and run the default sweep on synthetic faces,
#   in two stages: stage 1, the recipe's (below); then the sweep's eight runs start from it
#   (experiments/sweeps/default.yaml). Writes sweeps_out/default (FAMILY=1: default_family1).
# make test:  set up .venv (first time only) and run the test suite.
# make recipe [FAMILY=1]: the two-stage recipe at 3600 steps (README "The recipe"): the shared
#   encoder and 8 decoders pretrained on 8 identities, then the pair from them with the default
#   sweep's best setting, evaluated every 900 steps (experiments/sweeps/recipe.yaml). Each stage
#   resumes or re-uses a finished run. DATA=dir: the TFDS data dir of both (default
#   ~/.cache/encdec_jax/tfds).
#   BOTTLENECK=k: both stages at model.bottleneck k (default 128; other sizes in their own folders).
# make bench: training speed against the PyTorch peer and the machine's matmul ceiling.
# make gpu-check DATA=dir: on a GPU box, devices, speed, members and the recipe in one table
#   (DATA written beforehand by `python -m experiments.gpu_check --export=dir`).
# bash for pipefail: a failed pip install stops make (its output is filtered through grep)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VENV := .venv-torch
TEST_WORKERS ?= 2

FAMILY ?= 0
BOTTLENECK ?= 128
B_SUFFIX := $(if $(filter-out 128,$(BOTTLENECK)),_b$(BOTTLENECK),)
STAGE1 := sweeps_out/pretrain8$(if $(filter-out 0,$(FAMILY)),_s$(FAMILY),)$(B_SUFFIX)
DATA_SET := $(if $(DATA),--config.data.dir=$(DATA),)
FAMILY_SETS := --set data.seed=$(FAMILY) --set train.init_from=$(STAGE1) $(if $(DATA),--set data.dir=$(DATA),)

# Stage 1 of `make sweep` and `make recipe` (one folder: either re-uses the other's): the shared
# encoder and 8 decoders on 8 identities of the family (DeepFaceLab's pretrain mode). Held out: 8
# faces per identity, not 32: its evaluation (reconstructions, the probes, 56 swap directions
# nobody reads) takes a quarter of the time, and the training split, so the training, is the same.
# The encoder reads what stage 2's does (model.input_norm=contrast: the crop and its local
# contrast's magnitude; train.init_from refuses a source that reads other inputs).
define stage1
	$(if $(findstring data.seed,$(ARGS)),$(error set the family with FAMILY=N, not ARGS='--set data.seed=N': stage 1 must train on the family stage 2 does))
	$(PY) -m experiments.train --config=experiments/configs/original.py:small --workdir=$(STAGE1) \
	  --config.data.identities=8 --config.data.seed=$(FAMILY) --config.model.bottleneck=$(BOTTLENECK) \
	  --config.model.input_norm=contrast \
	  --config.loss=ssim:1.0,mae:1.0 --config.train.steps=1800 --config.train.batch_size=8 \
	  --config.train.clip_norm=1.0 --config.eval.judges=False --config.data.test_per_identity=8 $(DATA_SET)
endef

.PHONY: sweep test recipe bench gpu-check install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(PY) -m pip install -q --no-compile --disable-pip-version-check -e '.[dev]' 2>&1 \
	  | { grep -v "^WARNING: Location" || true; } || (echo "install failed: see the pip output above" && exit 1)
	@# pip compiles every installed module to bytecode on one core (about 45 s here); compileall
	@# does the same on every core. Files that do not compile (some packages ship test data as .py)
	@# are skipped, as pip skips them.
	@$(PY) -m compileall -qq -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
	@touch $(STAMP)

sweep: $(STAMP)
	$(stage1)
	$(PY) -m experiments.sweep --workdir=sweeps_out/default$(if $(filter-out 0,$(FAMILY)),_family$(FAMILY),) \
	  $(FAMILY_SETS) $(ARGS)

recipe: $(STAMP)
	$(stage1)
	$(PY) -m experiments.sweep --sweep=experiments/sweeps/recipe.yaml \
	  --workdir=sweeps_out/recipe_family$(FAMILY)$(B_SUFFIX) $(FAMILY_SETS) \
	  --set model.bottleneck=$(BOTTLENECK) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 tests $(ARGS)

$(TORCH_VENV)/.installed:
	@test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0 numpy 2>&1 | grep -v "^WARNING: Location" || true
	@touch $@

bench: $(STAMP) $(TORCH_VENV)/.installed
	$(PY) -m experiments.bench --torch_python=$(TORCH_VENV)/bin/python $(ARGS)

gpu-check: $(STAMP)
	$(PY) -m experiments.gpu_check --data=$(DATA) $(ARGS)

clean:
	rm -rf $(VENV) $(TORCH_VENV) *.egg-info
