"""`./launch.sh doctor`: what this machine has and what ./launch.sh would do with it, in a few
seconds, installing nothing and training nothing.

It prints the Python and venv in use, the accelerator it detects and why, the JAX build
./launch.sh would install, the lock and whether the venv matches it, JAX's version, backend and
devices (if installed), the data directory and the datasets found there (with how to get the
missing ones), and wandb's mode and whether an API key is configured (never the key). Exit 0
when the main job can run (or ./launch.sh can set itself up to run it), 1 otherwise.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True          # importing jax below must not write .pyc files into the venv

from jaxdl.setup import accel as accel_mod        # noqa: E402
from jaxdl.setup import lockfile                  # noqa: E402

ROOT = lockfile.ROOT
MIN_PYTHON = (3, 11)
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
ACCEL_PACKAGES = {"cuda12": "jax-cuda12-plugin", "cuda13": "jax-cuda13-plugin", "tpu": "libtpu"}


class Report:
    def __init__(self):
        self.problems: list[str] = []     # the main job cannot run
        self.notes: list[str] = []        # worth knowing; the main job runs

    def line(self, key: str, text: str) -> None:
        print(f"{key:<12} {text}")

    def sub(self, text: str) -> None:
        print(f"{'':<12}   {text}")


def _venv_path() -> Path:
    return Path(os.environ.get("JAXDL_VENV") or ROOT / ".venv")


def _in_venv(venv: Path) -> bool:
    try:
        return Path(sys.prefix).resolve() == venv.resolve()
    except OSError:
        return False


def _uv(r: Report) -> tuple[str, bool]:
    """(what installs, whether set-up can install)."""
    if os.environ.get("JAXDL_INSTALLER") == "pip":
        return "pip (JAXDL_INSTALLER=pip)", True
    path = os.environ.get("JAXDL_UV") or os.environ.get("JAXDL_UV_PATH")
    if path and os.access(path, os.X_OK):
        try:
            v = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            v = "uv (does not run)"
        return f"{v} at {path}", True
    if os.environ.get("JAXDL_UV"):
        r.notes.append(f"JAXDL_UV={os.environ['JAXDL_UV']} is not executable; ./launch.sh would use pip")
        return "pip (JAXDL_UV is not executable)", True
    where = f" into {Path(path).parents[1]}" if path else ""
    return f"uv, not fetched yet: ./launch.sh fetches it with pip{where} once (pip if that fails)", True


def section_python(r: Report, venv: Path) -> None:
    v = sys.version_info
    r.line("python", f"{platform.python_version()} at {sys.executable}")
    if (v.major, v.minor) < MIN_PYTHON:
        r.problems.append(f"Python {platform.python_version()} is older than 3.11; set PYTHON=python3.11 "
                          "(or newer) and rerun ./launch.sh")
    if not (venv / "bin" / "python").exists():
        r.line("venv", f"{venv}: not created yet (./launch.sh creates it and installs the lock)")
        return
    stamp = lockfile.read_stamp(venv)
    how = (f"installed by {stamp.get('installer', '?')}: {stamp.get('mode', '?')}, {stamp.get('accel', '?')}"
           + (f", extras {stamp['extras']}" if stamp.get("extras") else "")) if stamp.get("key") else \
        "not installed from the lock yet: ./launch.sh installs it on its next run"
    r.line("venv", f"{venv}: {how}" + ("" if _in_venv(venv) else f"; doctor runs in {sys.prefix}"))


def section_accel(r: Report) -> accel_mod.Accel | None:
    try:
        a = accel_mod.detect()
    except accel_mod.AccelError as e:
        r.line("accelerator", f"? ({e})")
        r.problems.append(str(e))
        return None
    r.line("accelerator", f"{a.name}: {a.reason}")
    if a.warning:
        r.sub(f"warning: {a.warning}")
        r.notes.append(a.warning)
    r.line("jax build", f"{a.extra}" + (" (the CPU build)" if a.name == "cpu" else
                                        f" (requirements/{a.name}.txt on top of the lock)")
           + "; override with JAXDL_ACCEL=cpu|cuda12|cuda13|tpu")
    return a


def section_lock(r: Report, venv: Path, a: accel_mod.Accel | None) -> None:
    unlocked = os.environ.get("JAXDL_UNLOCKED", "") not in ("", "0")
    mode = "unlocked" if unlocked else "locked"
    lock = lockfile.LOCK
    if not lock.is_file():
        r.line("lock", f"{lock} is missing")
        if not unlocked:
            r.problems.append(f"{lock} is missing; run ./launch.sh lock (or JAXDL_UNLOCKED=1 ./launch.sh)")
        return
    n = len(lockfile.pins(lock))
    text = f"{lock.relative_to(ROOT)} ({n} packages, sha256 {lockfile.file_sha256(lock)[:12]})"
    if a is not None and a.name != "cpu":
        ov = lockfile.overlay(a.name)
        text += f" + {ov.relative_to(ROOT)} ({len(lockfile.pins(ov))} packages)" if ov.is_file() else \
            f" + {ov.relative_to(ROOT)} MISSING"
        if not ov.is_file() and not unlocked:
            r.problems.append(f"{ov} is missing; run ./launch.sh lock")
    r.line("lock", text + (" - not used: JAXDL_UNLOCKED resolves pyproject.toml fresh" if unlocked else ""))
    stale = lockfile.stale_reason()
    if stale and not unlocked:
        r.sub(f"stale: {stale}")
        r.problems.append(stale)
    if a is None or not (venv / "bin" / "python").exists():
        return
    stamp = lockfile.read_stamp(venv)
    if stamp.get("key") == lockfile.install_key(mode, a.name):
        r.sub(f"the venv holds exactly this ({mode}, {a.name}); ./launch.sh installs nothing")
    elif stamp.get("accel") and stamp["accel"] != a.name:
        r.sub(f"the venv has the {stamp['accel']} build; ./launch.sh will install the packages that differ "
              f"for {a.name}")
    else:
        r.sub(f"the venv differs ({'no stamp' if not stamp else 'lock, pyproject or mode changed'}); "
              "./launch.sh will install what differs")
    if _in_venv(venv) and not unlocked:
        wrong = lockfile.mismatches(lock, lockfile.overlay(a.name) if a.name != "cpu" else None)
        if wrong:
            r.sub(f"installed versions differ from the lock: {', '.join(wrong[:6])}"
                  + (f" (+{len(wrong) - 6} more)" if len(wrong) > 6 else ""))


def section_jax(r: Report, venv: Path, a: accel_mod.Accel | None) -> None:
    if not (venv / "bin" / "python").exists():
        r.line("jax", "not installed yet")
        return
    if not _in_venv(venv):
        r.line("jax", f"not checked: doctor runs outside {venv} (./launch.sh doctor runs it inside)")
        return
    try:
        import jax
        devs = jax.devices()
        backend = jax.default_backend()
    except Exception as e:           # a broken install is what doctor is for
        r.line("jax", f"does not start: {type(e).__name__}: {str(e)[:300]}")
        r.problems.append("JAX is installed but does not start; rerun ./launch.sh (or JAXDL_ACCEL=cpu ./launch.sh)")
        return
    kinds = sorted({f"{d.platform}:{d.device_kind}" for d in devs})
    r.line("jax", f"{jax.__version__} (jaxlib {md.version('jaxlib')}), backend {backend}, "
                  f"{len(devs)} device(s): {', '.join(kinds)}")
    plugins = [f"{p} {md.version(p)}" for p in ACCEL_PACKAGES.values() if _installed(p)]
    if plugins:
        r.sub(f"accelerator packages: {', '.join(plugins)}")
    if a is not None and a.name != "cpu" and backend == "cpu":
        want = ACCEL_PACKAGES[a.name]
        if _installed(want):
            msg = (f"{want} is installed but JAX runs on the CPU: the {a.name} build does not see the device "
                   "(driver, CUDA_VISIBLE_DEVICES?)")
        else:
            msg = f"this machine has a {a.name} device but the venv holds the CPU build; ./launch.sh installs {a.extra}"
        r.sub(f"warning: {msg}")
        r.notes.append(msg)


def _installed(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


def data_dir() -> tuple[Path, str]:
    """(the data directory the main job uses, where that came from): conf/config.yaml's data_dir."""
    try:
        from omegaconf import OmegaConf
        d = str(OmegaConf.load(ROOT / "conf" / "config.yaml").data_dir)
        why = "JAXDL_DATA" if os.environ.get("JAXDL_DATA") else "conf/config.yaml's default; set JAXDL_DATA to change"
    except Exception:                # omegaconf not installed yet: the same rule as the config
        d = os.environ.get("JAXDL_DATA") or "data"
        why = "JAXDL_DATA" if os.environ.get("JAXDL_DATA") else "the default; set JAXDL_DATA to change"
    p = Path(d)
    return (p if p.is_absolute() else Path.cwd() / p), why


def section_data(r: Report) -> None:
    d, why = data_dir()
    r.line("data dir", f"{d} ({why})" + ("" if d.is_dir() else " - does not exist"))
    m = d / "mnist"
    have = [s for s in MNIST_FILES if (m / s).is_file() or (m / f"{s}.gz").is_file()]
    if len(have) == len(MNIST_FILES):
        r.sub(f"mnist: found, the 4 IDX files in {m} (task=mnist, seqclass variant=mnist)")
    else:
        missing = "no IDX files" if not have else "missing " + ", ".join(f"{s}(.gz)" for s in MNIST_FILES
                                                                         if s not in have)
        r.sub(f"mnist: {missing} in {m}; get it with task.source=tfds (tensorflow-datasets downloads it, "
              f"needs a network once) or put the four IDX files ({', '.join(MNIST_FILES)}, .gz or not) there")
    t = d / "tinyshakespeare" / "input.txt"
    if t.is_file():
        r.sub(f"tinyshakespeare: found, {t} ({t.stat().st_size:,} bytes; task=textgen)")
    else:
        r.sub(f"tinyshakespeare: no {t}; get it with task.source=tfds (tensorflow-datasets downloads it, needs "
              f"a network once) or save tiny-shakespeare's input.txt (any UTF-8 text) there, or task.path=FILE")
    r.sub("the main job (task=echo) and digits, and/or/xor, salary, forecast need no data files")


def section_wandb(r: Report) -> None:
    try:
        from omegaconf import OmegaConf
        mode = str(OmegaConf.load(ROOT / "conf" / "logger" / "wandb.yaml").mode)
    except Exception:
        mode = "offline"
    env = os.environ.get("WANDB_MODE")
    text = f"logger.mode={mode} (conf/logger/wandb.yaml)" + (f", WANDB_MODE={env}" if env else "")
    key = "not configured (fine for offline runs; `wandb login` or WANDB_API_KEY for logger.mode=online)"
    if os.environ.get("WANDB_API_KEY"):
        key = "configured (WANDB_API_KEY is set)"
    else:
        import netrc
        try:
            path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
            host = (os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").split("://")[-1].split("/")[0]
            if Path(path).is_file() and netrc.netrc(path).authenticators(host):
                key = f"configured ({path}, {host})"
        except (netrc.NetrcParseError, OSError):
            pass
    r.line("wandb", f"{text}; API key {key}")


def main(argv: list[str] | None = None) -> int:
    r = Report()
    venv = _venv_path()
    print(f"[doctor] jaxdl at {ROOT} on {socket.gethostname()} ({platform.system()} {platform.machine()}); "
          "installs nothing")
    section_python(r, venv)
    installer, _ = _uv(r)
    r.line("installer", installer)
    a = section_accel(r)
    section_lock(r, venv, a)
    section_jax(r, venv, a)
    section_data(r)
    section_wandb(r)
    for p in r.problems:
        print(f"problem      {p}")
    if r.problems:
        print("[doctor] NOT READY: the main job cannot run until the problems above are fixed")
        return 1
    ready = "ready: ./launch.sh runs the main job" if (venv / "bin" / "python").exists() else \
        "ready: ./launch.sh sets itself up, then runs the main job"
    print(f"[doctor] {ready}" + (f" ({len(r.notes)} warning(s) above)" if r.notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
