"""One GPU per job for a sweep on one host without SLURM (hydra/launcher=joblib_gpus).

Hydra's joblib launcher runs the jobs of a sweep in `n_jobs` worker processes (loky),
each running job after job. JAX picks its GPUs once per process, when its backend
starts, from CUDA_VISIBLE_DEVICES, and takes most of the memory of every GPU it sees.
So each worker claims ONE GPU for its whole life, before the first job touches JAX:
it takes an flock on <tmp>/jaxdl-gpu-<id>.lock for the first free id of the pool and
sets CUDA_VISIBLE_DEVICES to that id; its later jobs run on the same GPU, and the kernel
frees the claim when the worker exits. Workers of other sweeps on the host (and other
users) see the same lock files, so two sweeps side by side do not share a GPU either.

`OneGpuPerJob` is a Hydra callback: `on_multirun_start` (in the launching process,
before any job) finds the pool - `gpus` if given, else the ids in CUDA_VISIBLE_DEVICES,
else those `nvidia-smi` lists; never by starting JAX there, which would take memory on
every GPU - and refuses more workers than GPUs (exit code 2: Hydra turns exceptions of
callbacks into warnings, so it exits); `on_job_start` (in the worker, before the job)
claims a GPU, waiting while all are held by other processes (another sweep's workers
hold theirs until that sweep ends), with a line every minute. SLURM assigns GPUs itself
and needs none of this.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

_claim: tuple[str, int] | None = None      # (gpu id, fd of its lock file) held by this process


class NoFreeGpu(RuntimeError):
    """Every GPU of the pool is claimed by another process."""


def find_gpus(env=None) -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else nvidia-smi's."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _jax_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else bool(getattr(xla_bridge, "_backends", {}))


def claim_gpu(pool: list[str], lock_dir: str | None = None) -> str:
    """Claim the first free GPU of `pool` for this process (an flock on its lock file, held
    until the process exits) and set CUDA_VISIBLE_DEVICES to it. A process that already
    holds one keeps it. Raises NoFreeGpu when all are claimed, and RuntimeError when JAX
    already started in this process (it would not see the change)."""
    if not pool:
        raise NoFreeGpu("the GPU pool is empty")
    global _claim
    if _claim is not None:
        return _claim[0]
    if _jax_started():
        raise RuntimeError("JAX already started in this process, so it cannot be given one GPU any more; "
                           "claim the GPU before anything runs on JAX")
    directory = Path(lock_dir or tempfile.gettempdir())
    for gpu in pool:
        path = directory / f"jaxdl-gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _claim = (gpu, fd)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        return gpu
    raise NoFreeGpu(f"all GPUs of {pool} are claimed by other processes (lock files jaxdl-gpu-*.lock in "
                    f"{directory}); run at most {len(pool)} jobs at once (hydra.launcher.n_jobs)")


class OneGpuPerJob(Callback):
    """Hydra callback: every worker of a sweep runs its jobs on a GPU of its own.

    gpus: the pool (ids as CUDA_VISIBLE_DEVICES takes them); None: find_gpus().
    lock_dir: where the claims live (default: the system's temporary directory)."""

    def __init__(self, gpus=None, lock_dir: str | None = None):
        self.pool = [str(g) for g in gpus] if gpus is not None else None
        self.lock_dir = lock_dir

    def on_multirun_start(self, config, **kwargs) -> None:
        if self.pool is None:
            self.pool = find_gpus()
        n_jobs = config.hydra.launcher.get("n_jobs")
        problem = None
        if not self.pool:
            problem = ("found no GPU (neither CUDA_VISIBLE_DEVICES nor nvidia-smi); name them: "
                       "hydra.callbacks.one_gpu_per_job.gpus=[0,1]")
        elif n_jobs is None or n_jobs < 1 or n_jobs > len(self.pool):
            problem = (f"runs one job per GPU at a time: hydra.launcher.n_jobs is {n_jobs}, and there are "
                       f"{len(self.pool)} GPUs ({','.join(self.pool)}); set hydra.launcher.n_jobs={len(self.pool)}")
        if problem:
            print(f"[jaxdl] config error: hydra/launcher=joblib_gpus {problem}", file=sys.stderr)
            sys.exit(2)

    def on_job_start(self, config, **kwargs) -> None:
        pool = self.pool if self.pool is not None else find_gpus()
        waited = 0.0
        while True:
            try:
                gpu = claim_gpu(pool, self.lock_dir)
                break
            except NoFreeGpu as err:
                if waited % 60 == 0:
                    log.warning(f"job {config.hydra.job.num} waits for a GPU: {err}")
                time.sleep(1.0)
                waited += 1.0
        log.info(f"job {config.hydra.job.num} runs on GPU {gpu} (CUDA_VISIBLE_DEVICES={gpu}, "
                 f"worker pid {os.getpid()})")
