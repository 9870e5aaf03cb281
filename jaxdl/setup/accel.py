"""Which JAX build this machine needs: `cuda13`, `cuda12`, `tpu` or `cpu`.

  JAXDL_ACCEL=cpu|cuda12|cuda13|tpu   wins over detection;
  an NVIDIA GPU (nvidia-smi answers)  -> cuda13 with driver >= 580 (CUDA 13 wheels need it),
                                         cuda12 with an older driver;
  a TPU chip on the PCI bus           -> tpu (Google's vendor id with a TPU device id, as
                                         jax._src.hardware_utils reads it);
  otherwise                           -> cpu.

`python -m jaxdl.setup.accel` prints the name (launch.sh uses it); `--why` adds the reason.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ACCELS = ("cpu", "cuda12", "cuda13", "tpu")
CUDA13_MIN_DRIVER = 580          # CUDA 13.0 needs driver 580 or newer
CUDA12_MIN_DRIVER = 525          # JAX's CUDA 12 wheels need 525.60.13 or newer
GOOGLE_PCI_VENDOR = "0x1ae0"
TPU_PCI_DEVICES = {"0x0027": "v2/v3", "0x0056": "plc", "0x005e": "v4", "0x0062": "v5p",
                   "0x0063": "v5e", "0x006f": "v6e", "0x0076": "7x"}


class AccelError(ValueError):
    """A bad JAXDL_ACCEL value."""


@dataclass(frozen=True)
class Accel:
    name: str            # cpu | cuda12 | cuda13 | tpu
    reason: str          # why, e.g. "nvidia-smi: driver 580.65.06 (NVIDIA H100 80GB HBM3)"
    warning: str = ""    # something the user should know (an old driver, a failed nvidia-smi)

    @property
    def extra(self) -> str:
        """The pip requirement for JAX: `jax` (the CPU build) or `jax[cuda13]` etc."""
        return "jax" if self.name == "cpu" else f"jax[{self.name}]"


def nvidia_driver(env: dict | None = None) -> tuple[str | None, str, str]:
    """(driver version or None, GPU name, why) from `nvidia-smi` on PATH."""
    env = dict(os.environ if env is None else env)
    exe = shutil.which("nvidia-smi", path=env.get("PATH"))
    if exe is None:
        return None, "", "no nvidia-smi on PATH"
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "", f"nvidia-smi failed ({type(e).__name__})"
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    if out.returncode != 0 or not lines:
        msg = (out.stderr or out.stdout).strip().splitlines()
        return None, "", f"nvidia-smi found no GPU (exit {out.returncode}{': ' + msg[0][:120] if msg else ''})"
    fields = [f.strip() for f in lines[0].split(",")]
    version = fields[0]
    if not version.split(".")[0].isdigit():
        return None, "", f"nvidia-smi printed no driver version ({lines[0][:80]!r})"
    return version, (fields[1] if len(fields) > 1 else ""), f"{len(lines)} GPU(s)"


def tpu_chips(pci_root: str = "/sys/bus/pci/devices") -> tuple[int, str]:
    """(number of TPU chips on the PCI bus, their generation)."""
    n, kind = 0, ""
    for vendor in glob.glob(f"{pci_root}/*/vendor"):
        try:
            if Path(vendor).read_text().strip() != GOOGLE_PCI_VENDOR:
                continue
            dev = (Path(vendor).parent / "device").read_text().strip()
        except OSError:
            continue
        if dev in TPU_PCI_DEVICES:
            n, kind = n + 1, TPU_PCI_DEVICES[dev]
    return n, kind


def detect(env: dict | None = None, pci_root: str = "/sys/bus/pci/devices") -> Accel:
    """The accelerator this machine should install JAX for (see the module docstring)."""
    env = dict(os.environ if env is None else env)
    forced = env.get("JAXDL_ACCEL", "").strip()
    if forced:
        if forced not in ACCELS:
            raise AccelError(f"JAXDL_ACCEL={forced!r} is not one of {'|'.join(ACCELS)}; "
                             "unset it to detect the accelerator")
        return Accel(forced, f"JAXDL_ACCEL={forced}")
    if not sys.platform.startswith("linux"):
        return Accel("cpu", f"{sys.platform}: JAX's CUDA and TPU wheels are for Linux")
    version, gpu, why = nvidia_driver(env)
    if version is not None:
        major = int(version.split(".")[0])
        reason = f"nvidia-smi: driver {version}" + (f" ({gpu}, {why})" if gpu else f" ({why})")
        if major >= CUDA13_MIN_DRIVER:
            return Accel("cuda13", reason)
        warning = "" if major >= CUDA12_MIN_DRIVER else (
            f"driver {version} is older than {CUDA12_MIN_DRIVER}, the oldest JAX's CUDA 12 wheels support; "
            "update the NVIDIA driver (or JAXDL_ACCEL=cpu)")
        return Accel("cuda12", reason + f"; CUDA 13 needs driver >= {CUDA13_MIN_DRIVER}", warning)
    n, kind = tpu_chips(pci_root)
    if n:
        return Accel("tpu", f"{n} TPU {kind} chip(s) on the PCI bus")
    warning = why if why.startswith("nvidia-smi") else ""
    return Accel("cpu", f"no NVIDIA GPU ({why}) and no TPU", warning)


def main(argv: list[str]) -> int:
    try:
        a = detect()
    except AccelError as e:
        print(f"[launch] {e}", file=sys.stderr)
        return 2
    print(f"{a.name}\t{a.reason}" if "--why" in argv else a.name)
    if a.warning:
        print(f"[launch] warning: {a.warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
