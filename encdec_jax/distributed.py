"""Multi-host start-up, in one function behind an explicit switch.

  ENCDEC_DISTRIBUTED=off       one process (the default); refuses to start if the environment says
                               this is one task of many (SLURM_NTASKS > 1, a multi-worker TPU, an
                               MPI world), so a misconfigured cluster never runs N independent jobs.
  ENCDEC_DISTRIBUTED=auto      jax.distributed.initialize() detects the cluster: SLURM, Cloud TPU
                               VMs, Open MPI, Kubernetes (JobSet / indexed Job pods).
  ENCDEC_DISTRIBUTED=explicit  ENCDEC_COORDINATOR=host:port, ENCDEC_NUM_PROCESSES, ENCDEC_PROCESS_ID.
  ENCDEC_INIT_TIMEOUT          seconds to wait for every process to join (default 300).

The same values may come as flags (experiments/train.py --distributed=...). Call `initialize()`
before anything touches a JAX device. On CPU-only clusters set JAX_PLATFORMS=cpu: cross-process
collectives then use gloo.
"""
from __future__ import annotations

import os

MODES = ("off", "auto", "explicit")


class DistributedError(RuntimeError):
  """The cluster could not be joined, or the environment and the switch disagree."""


def _env_int(name: str) -> int | None:
  v = os.environ.get(name, "")
  if not v:
    return None
  try:
    return int(v)
  except ValueError:
    raise DistributedError(f"{name}={v!r} is not an integer") from None


def sibling_tasks_hint() -> str:
  """Why the environment looks like one task of a multi-process job ('' if it does not)."""
  for name in ("SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
    n = _env_int(name)
    if n and n > 1:
      return f"{name}={n}"
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if hosts.count(",") >= 1:
    return f"TPU_WORKER_HOSTNAMES lists {hosts.count(',') + 1} workers"
  return ""


def _wait_for_coordinator(address: str, timeout: int, where: str) -> None:
  """Polls the coordinator's TCP port: JAX itself aborts the whole process (a fatal CHECK, no
  Python exception) when it cannot reach it, so the clear error is raised here first."""
  import socket
  import time
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise DistributedError(f"ENCDEC_COORDINATOR={address!r}; expected host:port")
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=2):
        return
    except OSError as e:
      if time.monotonic() > deadline:
        raise DistributedError(f"could not join the cluster ({where}) within {timeout} s: nothing "
                               f"accepts connections at {address} ({e}); is process 0 running?") from None
      time.sleep(0.5)


def initialize(mode: str | None = None, *, coordinator: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               timeout_s: int | None = None) -> None:
  """Joins the multi-controller runtime (or checks that a single process is intended)."""
  mode = mode or os.environ.get("ENCDEC_DISTRIBUTED", "off") or "off"
  if mode not in MODES:
    raise DistributedError(f"ENCDEC_DISTRIBUTED / --distributed={mode!r}; valid: {list(MODES)}")
  hint = sibling_tasks_hint()
  if mode == "off":
    if hint:
      raise DistributedError(
          f"this process looks like one task of a multi-process job ({hint}) but distributed "
          "start-up is off: every task would train alone. Set ENCDEC_DISTRIBUTED=auto (or "
          "explicit), or run a single task.")
    return
  timeout = timeout_s or _env_int("ENCDEC_INIT_TIMEOUT") or 300
  kwargs: dict = {"initialization_timeout": timeout}
  if mode == "explicit":
    coordinator = coordinator or os.environ.get("ENCDEC_COORDINATOR")
    num_processes = num_processes if num_processes is not None else _env_int("ENCDEC_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("ENCDEC_PROCESS_ID")
    missing = [n for n, v in (("ENCDEC_COORDINATOR", coordinator), ("ENCDEC_NUM_PROCESSES", num_processes),
                              ("ENCDEC_PROCESS_ID", process_id)) if v is None]
    if missing:
      raise DistributedError(f"ENCDEC_DISTRIBUTED=explicit needs {', '.join(missing)}")
    if not 0 <= process_id < num_processes:
      raise DistributedError(f"ENCDEC_PROCESS_ID={process_id} must be in [0, {num_processes})")
    kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
  where = (f"coordinator {coordinator}, process {process_id} of {num_processes}" if mode == "explicit"
           else "cluster auto-detection")
  if mode == "explicit" and process_id != 0:
    _wait_for_coordinator(coordinator, timeout, f"{where}")
  import sys
  print(f"encdec_jax: joining the cluster ({where}), timeout {timeout} s", file=sys.stderr, flush=True)
  import jax
  if os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # noqa: BLE001 - JAX raises several types; name what we tried
    raise DistributedError(f"could not join the cluster ({where}) within {timeout} s: "
                           f"{type(e).__name__}: {str(e)[:500]}") from None
  expected = num_processes or _env_int("ENCDEC_NUM_PROCESSES")
  if expected and jax.process_count() != expected:
    raise DistributedError(f"joined {jax.process_count()} processes, expected {expected}")
  if jax.process_count() == 1 and hint:
    raise DistributedError(f"distributed start-up found 1 process but the environment says {hint}")
