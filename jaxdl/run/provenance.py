"""What produced a run, for summary.json and the wandb config: the code (git commit, and the
diff when the tree was dirty), the environment (the lock's hash, whether the installed
versions equal it, the versions that compute), the machine (backend, device kinds, host) and
the command (overrides, UTC start time).

    prov = provenance(overrides=["task=echo", "seed=3"], run_dir=run_dir)

Dirty means tracked files differ from the commit (`git status --untracked-files=no`); their
diff against HEAD is written to `run_dir/git.diff`. Outside a git checkout (an installed
wheel), `git.commit` is None.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import platform
import socket
import subprocess
from pathlib import Path
from typing import Sequence

PACKAGE_ROOT = Path(__file__).resolve().parents[2]       # the checkout jaxdl runs from
VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "hydra-core", "wandb", "numpy",
             "jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu")   # the last three: only where installed
GIT_DIFF = "git.diff"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)


def git_state(root: Path = PACKAGE_ROOT, run_dir: Path | None = None) -> dict:
    """{"commit": sha or None, "dirty": bool or None, "diff": "git.diff" (dirty and run_dir given)}."""
    try:
        head = _git(root, "rev-parse", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    out = {"commit": head.stdout.strip(), "dirty": dirty}
    if dirty and run_dir is not None:
        diff = _git(root, "diff", "HEAD", "--binary")
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / GIT_DIFF).write_text(diff.stdout)
        out["diff"] = GIT_DIFF
    return out


def versions() -> dict:
    """Python and the packages whose versions decide the numbers (None: not installed)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            if name in VERSIONED[:8]:
                out[name] = None
    return out


def lock_state(root: Path = PACKAGE_ROOT) -> dict:
    """{"file", "sha256", "accelerator", "overlay_sha256", "matches": installed == locked} of the
    lock the venv was installed from; {"file": None} where there is none (an installed wheel)."""
    import sys
    from jaxdl.setup import lockfile
    lock = root / "requirements" / "lock.txt"
    if not lock.is_file():
        return {"file": None}
    stamp = lockfile.read_stamp(Path(sys.prefix))
    accel = stamp.get("accel")
    out = {"file": str(lock.relative_to(root)), "sha256": lockfile.file_sha256(lock),
           "mode": stamp.get("mode"), "accelerator": accel}
    overlay = lockfile.overlay(accel, lock.parent) if accel else None
    if overlay is not None and overlay.is_file():
        out["overlay"] = str(overlay.relative_to(root))
        out["overlay_sha256"] = lockfile.file_sha256(overlay)
    wrong = lockfile.mismatches(lock, overlay)
    out["matches"] = not wrong           # every locked package that applies here is installed at its pin
    if wrong:
        out["differs"] = wrong
    return out


def provenance(overrides: Sequence[str] = (), run_dir: Path | None = None, root: Path = PACKAGE_ROOT,
               started: dt.datetime | None = None) -> dict:
    """The run's record (see the module docstring). `overrides`: the command line's Hydra
    overrides; `started`: the start time (default: when this process started)."""
    import jax
    devs = jax.devices()
    return {
        "git": git_state(root, run_dir),
        "lock": lock_state(root),
        "versions": versions(),
        "backend": jax.default_backend(),
        "device_kinds": sorted({f"{d.platform}:{d.device_kind}" for d in devs}),
        "device_count": len(devs),
        "process_count": jax.process_count(),
        "host": socket.gethostname(),
        "overrides": list(overrides),
        "start_utc": (started or process_start()).astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def hydra_overrides() -> list[str]:
    """The overrides of the running Hydra job (a multirun job's own values included); [] outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    except Exception:        # pragma: no cover
        return []


def process_start() -> dt.datetime:
    """When this process started (psutil, a wandb dependency), else now."""
    try:
        import psutil
        return dt.datetime.fromtimestamp(psutil.Process().create_time(), dt.timezone.utc)
    except Exception:        # pragma: no cover
        return dt.datetime.now(dt.timezone.utc)
