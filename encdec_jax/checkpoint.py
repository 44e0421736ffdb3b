"""Orbax checkpoints of the train state, with a JSON `meta` item beside each step.

The meta item also holds a checksum of every leaf's bytes, taken from the state being saved;
restore recomputes them, so a checkpoint whose contents changed after it was written (flipped
bits on a disk, a copy gone wrong) is named damaged with its leaves, like a truncated one,
instead of loading silently and diverging later. (Only where this process holds every array
whole: a multi-host run's shards are not checksummed.)
"""
from __future__ import annotations

import gc
import hashlib
import os
import shutil
import sys

import numpy as np

import jax
import orbax.checkpoint as ocp


MARGIN = 16 << 20  # bytes free beyond the state's own, for Orbax's metadata and the meta item


class CheckpointError(ValueError):
  """A checkpoint cannot be restored; the message names the step and the way out."""


class CheckpointMismatchError(CheckpointError):
  """The checkpoint holds another model: the message lists the differing parameter paths."""


class CheckpointDamagedError(CheckpointError):
  """The checkpoint's files are missing or unreadable (not a shape mismatch)."""


def checksums(state) -> dict[str, str] | None:
  """{leaf path: sha256 of its bytes, first 16 hex digits}, or None where an array is not whole
  on this process (multi-host)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return None
    out[_key(path)] = hashlib.sha256(np.ascontiguousarray(np.asarray(leaf)).tobytes()).hexdigest()[:16]
  return out


NO_TABLE = object()  # a checkpoint's meta without a checksum table


def _names(keys) -> str:
  keys = sorted(keys)
  return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")


def checksum_problem(saved, now: dict[str, str] | None) -> str | None:
  """What is wrong with a restored state against its saved checksum table, or None: every leaf
  needs a well-formed entry (16 hex digits), no entry may name a leaf the state lacks, and every
  entry must match. No table at all (NO_TABLE), or a state not whole on this process (`now`
  None), is not checkable: None."""
  if saved is NO_TABLE or now is None:
    return None
  if not isinstance(saved, dict):
    return f"its checksum table is a {type(saved).__name__}, not a table of the arrays"
  malformed = [k for k, v in saved.items()
               if not (isinstance(v, str) and len(v) == 16 and all(c in "0123456789abcdef" for c in v))]
  if malformed:
    return f"{len(malformed)} checksum entries are not checksums ({_names(malformed)})"
  missing, extra = set(now) - set(saved), set(saved) - set(now)
  if missing:
    return f"{len(missing)} of its {len(now)} arrays have no checksum entry ({_names(missing)})"
  if extra:
    return f"its checksum table names {len(extra)} arrays it does not hold ({_names(extra)})"
  bad = [k for k in saved if now[k] != saved[k]]
  if bad:
    return f"its contents changed after it was saved: {len(bad)} arrays differ from their checksums ({_names(bad)})"
  return None


def _key(path) -> str:
  """'params/encoder/bottleneck/kernel' from a tree path (dict keys or dataclass fields)."""
  parts = []
  for p in path:
    parts.append(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))))
  return "/".join(parts)


def saved_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints finished in WORKDIR/checkpoints ([] if none), read from the
  folder's names without opening Orbax (a save in progress is a temporary name, not a step)."""
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(x) for x in os.listdir(d) if x.isdigit()) if os.path.isdir(d) else []


class Checkpointer:
  """Async, keep-N checkpoints under WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep: int):
    path = os.path.abspath(os.path.join(workdir, "checkpoints"))  # Orbax needs absolute paths
    self.path = path
    self.mgr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=True, create=True))

  def latest_step(self) -> int | None:
    return self.mgr.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    if step in self.mgr.all_steps():
      return
    need = sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(state)) + MARGIN
    free = shutil.disk_usage(self.path).free
    if free < need:  # before Orbax starts: a full disk mid-save failed one save later, in tracebacks
      raise OSError(f"not enough disk space to save checkpoint step {step} in {self.path}: it needs "
                    f"about {need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free. The checkpoints "
                    f"saved so far are kept; free some space and resume with the same --workdir")
    sums = checksums(state)
    if sums is not None:
      meta = dict(meta, checksums=sums)
    self.mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)))

  def all_steps(self) -> list[int]:
    return sorted(self.mgr.all_steps())

  def _damaged(self, step: int, what: str) -> CheckpointDamagedError:
    earlier = [s for s in self.all_steps() if s < step]
    way_out = (f"to resume from step {earlier[-1]}, the one before, move it aside: mv "
               f"{self.path}/{step} {self.path}/{step}.damaged" if earlier else
               f"no earlier checkpoint is left; move it aside to start again: mv "
               f"{self.path}/{step} {self.path}/{step}.damaged")
    return CheckpointDamagedError(f"checkpoint step {step} in {self.path} is damaged ({what}); {way_out}")

  def restore(self, step: int, abstract_state):
    """Restores into the layout of `abstract_state` (ShapeDtypeStructs with shardings). A
    checkpoint of another model raises CheckpointMismatchError naming the differing parts; one
    whose files are missing or unreadable CheckpointDamagedError, naming the step and the way
    out (move it aside, the previous step is then the latest)."""
    if step not in self.all_steps():
      raise CheckpointError(f"no checkpoint at step {step} in {self.path}; saved steps: {self.all_steps()}")
    state_dir = os.path.join(self.path, str(step), "state")
    if not os.path.exists(os.path.join(state_dir, "_METADATA")):
      raise self._damaged(step, f"{state_dir}/_METADATA is missing")
    diff = self.mismatch(step, abstract_state)
    if diff:
      raise CheckpointMismatchError(
          f"checkpoint step {step} in {self.path} does not fit this model ({len(diff)} differing "
          f"entries): " + "; ".join(diff[:8]) + ("; ..." if len(diff) > 8 else ""))
    try:
      out = self.mgr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - tensorstore/OCDBT errors of truncated or lost files
      what = str(e).split(" See full")[0].splitlines()[0][:200]
      del e
      # Orbax's failed reads leave tasks holding exceptions; finalise them now, not at a later
      # garbage collection that can land inside the compiler of an unrelated import.
      gc.collect()
      raise self._damaged(step, what) from None
    state, meta = out["state"], out["meta"] if isinstance(out["meta"], dict) else {}
    problem = checksum_problem(meta.get("checksums", NO_TABLE), checksums(state))
    if problem:
      raise self._damaged(step, problem)
    if "checksums" not in meta:
      print(f"note: checkpoint step {step} in {self.path} has no checksum table (written before "
            f"checkpoints carried one, or on several hosts): restored, not verified", file=sys.stderr)
    return state, {k: v for k, v in meta.items() if k != "checksums"}

  def mismatch(self, step: int, abstract_state) -> list[str]:
    """'path: saved shape -> wanted shape' for every array that differs or exists on one side."""
    try:
      meta = ocp.StandardCheckpointer().metadata(os.path.join(self.path, str(step), "state"))
      saved = getattr(meta, "item_metadata", meta)
    except Exception:  # noqa: BLE001 - no readable metadata: let restore report what it finds
      return []
    flat = lambda t: {_key(p): tuple(getattr(v, "shape", ())) for p, v in
                      jax.tree_util.tree_flatten_with_path(t)[0]}
    old, new = flat(saved), flat(abstract_state)
    out = []
    for k in sorted(set(old) | set(new)):
      if k not in new:
        out.append(f"{k}: in the checkpoint, not in the model")
      elif k not in old:
        out.append(f"{k}: in the model, not in the checkpoint")
      elif old[k] != new[k]:
        out.append(f"{k}: checkpoint {old[k]} vs model {new[k]}")
    return out

  def close(self) -> None:
    if self.mgr is not None:
      self.mgr.wait_until_finished()
      self.mgr.close()
      self.mgr = None


def abstract_like(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
