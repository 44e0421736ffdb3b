"""Deepfakes 'Original': shared encoder, one decoder per identity, on synthetic faces.

  python -m experiments.train --config=experiments/configs/original.py --workdir=runs/original
  python -m experiments.train --config=experiments/configs/original.py:small --workdir=runs/small \
      --config.model.bottleneck=128 --config.loss=ssim:1.0,mae:1.0

Variants (the part after the colon): "full" (default: the published sizes, 64x64, batch 16 per
identity), "small" (a laptop: 32x32, quarter width, minutes on 2 CPU cores), "tiny" (tests).
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "full"
  c = ml_collections.ConfigDict()
  c.seed = 0                        # init and augmentation; data has its own seed below
  # The recipe, chosen by measurement (BENCHMARKS.md, "Recipe"): SSIM + MAE weighted by the face
  # mask with eyes x10 and mouth x5. Against plain MAE at 3000 steps of the small model: face-region
  # swap MAE 0.060 vs 0.069, pose/expression error 0.82 vs 0.93, and faint eyes and mouths appear.
  c.loss = "ssim:1.0,mae:1.0"       # weighted terms from encdec_jax.losses.LOSSES (README table)

  c.mask = ml_collections.ConfigDict()
  c.mask.enabled = True             # weight the loss by the face mask (eyes, mouth extra); needs masks
  c.mask.eye_multiplier = 10.0      # faceswap's default is 3 (and 2 for the mouth): slower to show eyes
  c.mask.mouth_multiplier = 5.0
  c.mask.learned_weight = 1.0       # with model.learn_mask: weight of the mask's MSE term

  c.model = ml_collections.ConfigDict()
  c.model.arch = "original"         # a key of encdec_jax.models.ARCHITECTURES
  c.model.bottleneck = 1024         # size of the shared latent (Dense after the convs)
  c.model.width = 1.0               # channel multiplier; 1.0 = 128/256/512/1024 encoder convs
  c.model.conv_impl = "im2col"      # convs as one matmul each (fast on XLA:CPU); or "xla", "s2d"
  c.model.dtype = "float32"         # compute dtype ("bfloat16" on accelerators)
  c.model.learn_mask = False        # decoders also predict the face mask (4th output channel)
  c.model.e_dims = 64               # df/liae only: encoder widths e_dims x (1, 2, 4, 8)
  c.model.d_dims = 64               # df/liae only: decoder widths d_dims x (8, 4, 2)
  c.model.upscale = "shuffle"       # upscale blocks: "shuffle" (pixel shuffle) or "resize"
  c.model.pixel_norm = False        # pixel norm before the bottleneck (DeepFaceLab's "-u")

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic_faces"   # built-in procedural faces (TFDS, no download), or "folders"
  c.data.resolution = 64            # a multiple of 16
  c.data.identities = 2             # N >= 2: one decoder each
  c.data.train_per_identity = 1000
  c.data.test_per_identity = 32     # held out, each with its ground-truth swaps
  c.data.seed = 0                   # which family of faces
  c.data.dir = ""                   # TFDS data_dir; "" = ~/.cache/encdec_jax/tfds
  c.data.root = ""                  # name="folders": ROOT/<identity>/*.png|jpg aligned crops
  c.data.min_size = 0               # folders: skip images smaller than this; 0 = resolution/2
  c.data.warp = True                # Deepfakes random warp of the inputs (targets stay unwarped)
  c.data.warp_scale = 0.03
  c.data.flip = True
  c.data.color_jitter = 0.05
  c.data.augment_on = "auto"        # augmentation on the "host" (numpy) or the "device"; auto: device unless CPU

  c.train = ml_collections.ConfigDict()
  c.train.steps = 20000
  c.train.batch_size = 16           # per identity, global over devices
  c.train.lr = 5e-5                 # Adam as the original: lr 5e-5, b1 0.5, b2 0.999
  c.train.b1 = 0.5
  c.train.b2 = 0.999
  c.train.log_every = 50
  c.train.preview_every = 1000
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3
  c.train.nonfinite = "stop"        # NaN/Inf loss or gradient: "stop" (last good checkpoint kept) or "skip"

  c.eval = ml_collections.ConfigDict()
  c.eval.judges = True              # identity transfer / leakage and pose-expression error of swaps
  c.eval.every = 0                  # also evaluate every E steps (0: at the end only)
  c.eval.judge_steps = 400          # each judge's training steps (once per dataset, cached)

  c.wandb = ml_collections.ConfigDict()
  c.wandb.mode = "offline"          # offline | online | disabled
  c.wandb.project = "encdec_jax"
  c.wandb.group = ""                # sweeps set this so their runs group together
  c.wandb.name = ""

  if variant == "full":
    pass
  elif variant == "small":
    c.model.width = 0.25
    c.model.bottleneck = 128
    c.data.resolution = 32
    c.data.train_per_identity = 600
    c.train.steps = 3000            # faint eyes and mouths from ~3000 steps (2 CPU cores: ~3.5 min)
    c.train.batch_size = 16
    c.train.lr = 1e-3
    c.train.log_every = 50
    c.train.preview_every = 1000
    c.train.checkpoint_every = 1000
  elif variant == "tiny":
    c.loss = "mae:1.0"              # the cheapest to compile; the mask and SSIM paths have their own tests
    c.mask.enabled = False
    c.model.width = 1 / 16
    c.model.bottleneck = 32
    c.model.conv_impl = "xla"       # 8x faster to compile; same function (tests/models_test.py)
    c.data.resolution = 16
    c.data.train_per_identity = 64
    c.data.test_per_identity = 8
    c.train.steps = 20
    c.train.batch_size = 4
    c.train.lr = 1e-3
    c.train.log_every = 5
    c.train.preview_every = 10
    c.train.checkpoint_every = 10
    c.wandb.mode = "disabled"
    c.eval.judge_steps = 150
  else:
    raise ValueError(f"unknown variant {variant!r} of original.py; valid: 'full', 'small', 'tiny'")
  return c
