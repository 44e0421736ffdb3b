"""The launch scripts refuse to start without their variables, naming every missing one."""
import os
import re
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLEAN = {k: v for k, v in os.environ.items()
         if not k.startswith(("ENCDEC_", "SLURM_", "TPU_", "GCP_", "SWEEP_", "GPUS", "JOB_NAME", "IMAGE",
                              "NUM_NODES", "PVC", "DRY_RUN"))}


def _run(args, **env):
  return subprocess.run(["bash", *args], cwd=ROOT, env={**CLEAN, **env}, capture_output=True,
                        text=True, timeout=60)


@pytest.mark.parametrize("args,missing", [
    (["launch/slurm.sbatch"], "ENCDEC_CONFIG ENCDEC_WORKDIR SLURM_JOB_ID"),
    (["launch/tpu_pod.sh", "train"], "TPU_NAME TPU_ZONE GCP_PROJECT"),
    (["launch/k8s.sh"], "JOB_NAME IMAGE NUM_NODES GPUS_PER_NODE PVC ENCDEC_CONFIG"),
    (["launch/wandb_agents.sh"], "SWEEP_ID"),
])
def test_missing_variables_are_named(args, missing):
  r = _run(args)
  assert r.returncode == 2 and f"missing variable(s): {missing}" in r.stderr, r.stderr


def test_tpu_train_needs_config_and_workdir():
  r = _run(["launch/tpu_pod.sh", "train"], TPU_NAME="t", TPU_ZONE="z", GCP_PROJECT="p")
  assert r.returncode == 2 and "missing variable(s): ENCDEC_CONFIG ENCDEC_WORKDIR" in r.stderr


def test_k8s_manifest_is_filled_and_valid():
  r = _run(["launch/k8s.sh"], JOB_NAME="df1", IMAGE="img:1", NUM_NODES="2", GPUS_PER_NODE="8",
           PVC="runs", ENCDEC_CONFIG="experiments/configs/df.py", DRY_RUN="1")
  assert r.returncode == 0, r.stderr
  m = yaml.safe_load(r.stdout)
  job = m["spec"]["replicatedJobs"][0]["template"]["spec"]
  c = job["template"]["spec"]["containers"][0]
  env = {e["name"]: e.get("value") for e in c["env"]}
  assert job["parallelism"] == 2 and job["completionMode"] == "Indexed"
  assert env["ENCDEC_DISTRIBUTED"] == "explicit" and env["ENCDEC_COORDINATOR"] == "df1-workers-0-0.df1:8476"
  assert c["resources"]["limits"]["nvidia.com/gpu"] == 8 and "--config=experiments/configs/df.py" in c["command"]


def test_wandb_agents_one_per_gpu():
  r = _run(["launch/wandb_agents.sh"], SWEEP_ID="me/proj/abc", GPUS="3", DRY_RUN="1")
  lines = r.stdout.strip().splitlines()
  assert r.returncode == 0 and len(lines) == 3
  assert [ln.split()[0] for ln in lines] == [f"CUDA_VISIBLE_DEVICES={i}" for i in range(3)]
  assert all(re.search(r"\bwandb agent +me/proj/abc$", ln) for ln in lines), lines
