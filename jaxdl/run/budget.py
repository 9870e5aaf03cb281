"""Sizes checked before compute: a run whose memory cannot fit the device is refused with
the estimate and the keys that set it, instead of being killed by the kernel's OOM killer
or failing inside XLA.

The estimate is generic: the member-stacked state (parameters, optimizer state, carried
sequence state) from `jax.eval_shape` of the init, before anything is allocated; then the
compiled epoch (or chunk) program's own account, `jit(f).lower(...).compile()
.memory_analysis()`: its outputs and temporaries (the activations of a window, kept for
the backward pass; its arguments, the state and the epoch's inputs, exist already when it
is compiled). Each is compared with the device's free memory: `memory_stats()` limit less
use on a GPU/TPU, the machine's available memory (MemAvailable) on the CPU.

    check_data(task_bytes, hint)          # before a task builds its arrays: raises DoesNotFit
    check_state(shapes, hint)             # before init: raises DoesNotFit
    compiled = check_program(lowered, hint)

`check_window` refuses TBPTT windows longer than the stream."""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

HINT = ("lower model.hidden, task.streams / task.batch / task.length (the epoch's inputs), tbptt.k2 (the "
        "window kept for the backward pass; model.remat=sqrt keeps less), or train.replicas / the population's "
        "members")
HEADROOM = 0.9          # the share of the device's memory a run may plan to use


class DoesNotFit(ValueError):
    """The run's estimated memory exceeds the device's; refused before compute."""


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def device_memory() -> tuple[int | None, str]:
    """(bytes still free for a run, what they are) on the first local device: the device's
    limit less what is in use (GPU/TPU), the machine's available memory on the CPU (the
    arrays made so far are already taken from it); (None, ...) if unknown."""
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:            # pragma: no cover - backends without memory_stats
        stats = {}
    if stats.get("bytes_limit"):
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return free, f"the free memory of {dev.platform}:{dev.device_kind}"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "the machine's available memory (CPU)"
    except OSError:              # pragma: no cover
        pass
    return None, "unknown"


def nbytes(tree) -> int:
    """Bytes of the arrays (or ShapeDtypeStructs) of a pytree."""
    return int(sum(np.prod(a.shape, dtype=np.int64) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree)))


def _refuse(parts: dict[str, int], limit: int, what: str, hint: str) -> None:
    total = sum(parts.values())
    if total <= HEADROOM * limit:
        return
    detail = ", ".join(f"{k} {gib(v)}" for k, v in parts.items() if v)
    raise DoesNotFit(f"this run needs about {gib(total)} ({detail}) and {what} is {gib(limit)}, so it cannot "
                     f"fit; {hint}")


def check_state(shapes, hint: str = HINT, limit: int | None = None) -> int:
    """Refuse a state (jax.eval_shape of the init) larger than the device's memory; its bytes."""
    what = "the given limit"
    if limit is None:
        limit, what = device_memory()
    n = nbytes(shapes)
    if limit is not None:
        _refuse({"parameters and optimizer state": n}, limit, what, hint)
    return n


def check_data(n: int, hint: str, limit: int | None = None) -> int:
    """Refuse, before a task builds its arrays, data of an estimated `n` bytes (the
    task config's data_bytes()) larger than the device's memory; returns n."""
    what = "the given limit"
    if limit is None:
        limit, what = device_memory()
    if limit is not None:
        _refuse({"the task's arrays": int(n)}, limit, what, hint)
    return int(n)


def check_program(lowered, hint: str = HINT, limit: int | None = None):
    """Compile `lowered` (jax.jit(f).lower(...)) and refuse it if its arguments, outputs
    and temporaries exceed the device's memory. Returns the compiled program (callable
    with the same arguments), so the check costs no second compile."""
    compiled = lowered.compile()
    what = "the given limit"
    if limit is None:
        limit, what = device_memory()
    try:
        m = compiled.memory_analysis()
    except Exception:            # pragma: no cover - backends without it
        m = None
    if m is not None and limit is not None:     # its arguments (state, inputs) exist already
        _refuse({"outputs": max(int(m.output_size_in_bytes) - int(m.alias_size_in_bytes), 0),
                 "temporaries (activations of a window)": int(m.temp_size_in_bytes)}, limit, what, hint)
    return compiled


def check_window(k1: int, k2: int, batches: int, steps: int) -> None:
    """Refuse TBPTT(k1, k2) windows longer than the training data: k1 longer than one
    batch's `steps` time steps, or k2 longer than the whole stream (batches * steps)."""
    stream = batches * steps
    if k1 > steps:
        raise ValueError(f"tbptt.k1={k1} is longer than a training batch ({steps} time steps), so every update "
                         f"would be mostly padding; set tbptt.k1 <= {steps}")
    if k2 > stream:
        raise ValueError(f"tbptt.k2={k2} is longer than the training stream ({stream} time steps), so the window "
                         f"would be mostly padding and its memory wasted; set tbptt.k2 <= {stream} "
                         f"(tbptt.k1=tbptt.k2={min(stream, steps)} is full BPTT over a batch)")
