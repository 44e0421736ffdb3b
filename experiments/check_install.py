"""Does the dependency set resolve on other platforms? uv's resolver against the package index.

  pip install uv   # once, anywhere on PATH (not a dependency of the project)
  python -m experiments.check_install [--platforms=macos_arm64,linux_x86_64,linux_aarch64]

For each platform, `uv pip compile pyproject.toml --extra dev --python-version 3.11
--python-platform P`: every dependency, environment markers evaluated for P and only wheels
with P's tags for packages that have no source (pip's own dry run with --platform evaluates
markers for the machine it runs on, and refuses pure-Python packages that ship only a source
archive, such as tensorflow-datasets' `promise`). Prints the versions it would install of the
packages that matter, or the resolver's reason. Needs the package index (not run by CI).
"""
import os
import shutil
import subprocess
import sys
import tempfile

from absl import flags

from experiments import _cli

PLATFORMS = {"macos_arm64": "aarch64-apple-darwin", "linux_x86_64": "x86_64-unknown-linux-gnu",
             "linux_aarch64": "aarch64-unknown-linux-gnu"}
SHOWN = ("jax", "jaxlib", "flax", "orbax-checkpoint", "tensorflow", "tensorflow-cpu", "tensorflow-datasets",
         "wandb", "mtcnn", "numpy", "scikit-image")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PLATFORMS = flags.DEFINE_list("platforms", list(PLATFORMS), f"any of {list(PLATFORMS)}")


def resolve(uv: str, platform: str) -> tuple[bool, str]:
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "requirements.txt")
    r = subprocess.run([uv, "pip", "compile", os.path.join(ROOT, "pyproject.toml"), "--extra", "dev",
                        "--python-version", "3.11", "--python-platform", PLATFORMS[platform],
                        "--no-header", "--quiet", "-o", out], capture_output=True, text=True, timeout=900)
    if r.returncode:
      why = [l.strip() for l in r.stderr.splitlines() if "cause:" in l or "Because" in l]
      return False, (why or r.stderr.strip().splitlines()[-1:] or [f"uv exited {r.returncode}"])[0]
    pins = dict(l.split("==", 1) for l in open(out).read().splitlines() if "==" in l and not l.startswith(" "))
    return True, ", ".join(f"{k} {pins[k].strip()}" for k in SHOWN if k in pins)


def main(argv):
  del argv
  _cli.start()
  bad = [p for p in _PLATFORMS.value if p not in PLATFORMS]
  if bad:
    sys.exit(f"error: --platforms: unknown {bad}; valid: {list(PLATFORMS)}")
  uv = shutil.which("uv") or shutil.which("uv", path=os.path.dirname(sys.executable))
  if uv is None:
    sys.exit("error: needs uv on PATH (pip install uv): its resolver evaluates markers and wheel tags "
             "for another platform")
  failed = []
  for p in _PLATFORMS.value:
    ok, what = resolve(uv, p)
    print(f"{p}: {'resolves' if ok else 'FAILS'}: {what}", flush=True)
    failed += [] if ok else [p]
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  _cli.run(main)
