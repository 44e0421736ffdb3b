"""Orbax checkpoints of the train state, with a JSON `meta` item beside each step."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Async, keep-N checkpoints under WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep: int):
    path = os.path.abspath(os.path.join(workdir, "checkpoints"))  # Orbax needs absolute paths
    self.mgr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=True, create=True))

  def latest_step(self) -> int | None:
    return self.mgr.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    if step in self.mgr.all_steps():
      return
    self.mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)))

  def restore(self, step: int, abstract_state):
    """Restores into the layout of `abstract_state` (ShapeDtypeStructs with shardings)."""
    out = self.mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def close(self) -> None:
    self.mgr.wait_until_finished()
    self.mgr.close()


def abstract_like(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
