"""absl flags are process-wide, and pytest-xdist may put any two test files on one worker: the
entry points that tests import in-process must not define a flag twice (a DuplicateFlagError in
whichever test imports the second one, in some orders of the suite only)."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imported_entry_points() -> set[str]:
  """experiments.X modules that some test file imports (import statements only: a script in a
  string runs in its own process), X defining absl flags."""
  found = set()
  for name in sorted(os.listdir(os.path.join(ROOT, "tests"))):
    if not name.endswith(".py"):
      continue
    tree = ast.parse(open(os.path.join(ROOT, "tests", name)).read())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module == "experiments":
        found |= {f"experiments.{a.name}" for a in node.names}
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments."):
        found.add(node.module)
      elif isinstance(node, ast.Import):
        found |= {a.name for a in node.names if a.name.startswith("experiments.")}
  defines_flags = lambda m: "flags.DEFINE" in open(os.path.join(ROOT, *m.split(".")) + ".py").read()  # noqa: E731
  return {m for m in found if os.path.isfile(os.path.join(ROOT, *m.split(".")) + ".py") and defines_flags(m)}


def test_entry_points_the_tests_import_define_no_flag_twice():
  mods = sorted(_imported_entry_points())
  assert "experiments.gpu_check" in mods  # its run_part and check are tested in-process
  # One process imports them all; then bench, whose --torch_python gpu_check defines too: the
  # second import must fail, or this check could not see a collision.
  script = (f"import importlib\nfor m in {mods!r}:\n  importlib.import_module(m)\nprint('together')\n"
            "from absl.flags import DuplicateFlagError\ntry:\n  import experiments.bench\n"
            "except DuplicateFlagError as e:\n  print('collision seen:', e)\n")
  r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0 and "together" in r.stdout, (mods, r.stderr[-2000:])
  assert "collision seen: The flag 'torch_python' is defined twice" in r.stdout, r.stdout
