"""Orbax checkpoints in <run_dir>/checkpoints, keyed by epoch.

The state pytree is saved as its flat list of leaves (orbax cannot store
zero-size arrays, which TBPTT's empty state tail is when k1 >= k2; those come
back from the target tree). Restore uses the abstract target (StandardRestore),
so optax states and NamedTuples come back with their own types; a restore is
bit-identical.

A checkpoint that cannot be read (damaged or truncated files) is told apart from one
of another model (`CheckpointMismatch`, refused before any array is read):
`restore_newest` moves unreadable ones aside to checkpoints/damaged/<epoch>-<time>
(never deleting them) and restores the newest readable one.

Orbax reads a checkpoint with many tensorstore reads gathered in an event loop it makes
for the call and closes when the call ends (asyncio_utils._run_sync_via_new_loop). When
one read fails, the call ends at once while the other reads are still in flight; as each
finishes, tensorstore's callback calls `loop.call_soon_threadsafe` on the closed loop and
the RuntimeError goes to `sys.unraisablehook`, which printed one "RuntimeError: Event loop
is closed" traceback per read. Those reads need nothing more, so `_quiet_closed_loops`
drops exactly that error (raised in asyncio's call_soon_threadsafe) and hands every other
unraisable exception to the previous hook."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

DAMAGED = "damaged"      # checkpoints/damaged/<epoch>-<time>: outside orbax's step names


class CheckpointMismatch(ValueError):
    """The checkpoint holds arrays of other shapes or another count than this state
    (another model or optimizer). Raised before any array is read."""


class CheckpointDamaged(RuntimeError):
    """The checkpoint's files cannot be read back (damaged, truncated, missing)."""


class CheckpointsUnreadable(ValueError):
    """No checkpoint in the directory can be read; they are left as they are. A
    ValueError, so the entry point reports it in one line with a non-zero exit."""


def _flat(tree) -> dict:
    return {f"{i:04d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree)) if np.size(leaf) > 0}


def _from_closed_loop(unraisable) -> bool:
    exc, tb = unraisable.exc_value, unraisable.exc_traceback
    if not (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"):
        return False
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "call_soon_threadsafe" and "asyncio" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _quiet_closed_loops() -> None:
    """Install (once per process) the unraisable hook described in the module docstring."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxdl_quiet_closed_loops", False):
        return

    def hook(unraisable):
        if not _from_closed_loop(unraisable):
            previous(unraisable)

    hook._jaxdl_quiet_closed_loops = True
    sys.unraisablehook = hook


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    text = text.split(" [tensorstore_spec=")[0]
    return text if len(text) <= limit else text[:limit] + "..."


def remove_unfinished(directory: Path) -> list[Path]:
    """Delete the temporary directories of saves that never finished (`<step>.orbax-checkpoint-tmp*`,
    left by a process killed while saving); returns them. A finished checkpoint is never
    touched: orbax renames the temporary directory to `<step>` only once it is complete."""
    gone = []
    if jax.process_index() == 0 and Path(directory).is_dir():
        for p in sorted(Path(directory).iterdir()):
            if ".orbax-checkpoint-tmp" in p.name:
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
    return gone


class Checkpointer:
    def __init__(self, directory: Path, max_to_keep: int = 2):
        _quiet_closed_loops()
        self.dir = Path(directory).absolute()
        for p in remove_unfinished(self.dir):
            print(f"[jaxdl] notice: removed {p}, a checkpoint whose save was cut short", file=sys.stderr)
        self.mngr = ocp.CheckpointManager(
            self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                           cleanup_tmp_directories=True),
            item_handlers=ocp.StandardCheckpointHandler())  # named, so item_metadata works on reopen

    def latest_epoch(self) -> int | None:
        return self.mngr.latest_step()

    def save(self, epoch: int, state) -> None:
        self.mngr.save(epoch, args=ocp.args.StandardSave(_flat(state)))
        self.mngr.wait_until_finished()

    def restore(self, epoch: int, like):
        """Restore the checkpoint of `epoch` into the structure of `like`. A checkpoint whose
        arrays do not match `like` (another model or optimizer) raises CheckpointMismatch
        before any array is read; one whose files cannot be read raises CheckpointDamaged."""
        want = _flat(like)
        path = self.dir / str(epoch)
        try:
            meta = self.mngr.item_metadata(epoch)
            saved = {k: tuple(getattr(v, "shape", ())) for k, v in meta.items()}
        except Exception as err:
            raise CheckpointDamaged(f"checkpoint {path} cannot be read: {_first_line(err)}") from err
        mine = {k: tuple(np.shape(v)) for k, v in want.items()}
        if saved != mine:
            diff = next((k for k in sorted(saved.keys() | mine.keys()) if saved.get(k) != mine.get(k)))
            raise CheckpointMismatch(f"checkpoint {path} holds {len(saved)} arrays and this state "
                                     f"{len(mine)}; array {diff} is {saved.get(diff, 'absent')} there and "
                                     f"{mine.get(diff, 'absent')} here")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, want)
        try:
            got = self.mngr.restore(epoch, args=ocp.args.StandardRestore(abstract))
        except Exception as err:
            raise CheckpointDamaged(f"checkpoint {path} cannot be read: {_first_line(err)}") from err
        leaves, treedef = jax.tree.flatten(like)
        out = [got.get(f"{i:04d}", leaf) if np.size(leaf) > 0 else leaf for i, leaf in enumerate(leaves)]
        return jax.tree.unflatten(treedef, out)

    def restore_newest(self, like) -> tuple[object, int | None, list[tuple[int, str, Path]]]:
        """(state, epoch, moved): the newest checkpoint that reads back into `like`, or
        (like, None, []) when there is none. Newer checkpoints that cannot be read are then
        moved to checkpoints/damaged/<epoch>-<time> and listed in `moved` as (epoch, why,
        new path). Nothing is moved when a checkpoint of another model is met
        (CheckpointMismatch) or when none can be read (CheckpointsUnreadable)."""
        damaged: list[tuple[int, str]] = []
        for epoch in sorted(self.mngr.all_steps(), reverse=True):
            try:
                state = self.restore(epoch, like)
            except CheckpointDamaged as err:
                damaged.append((epoch, str(err)))
                continue
            return state, epoch, [(e, why, self._move_aside(e)) for e, why in damaged]
        if damaged:
            raise CheckpointsUnreadable(
                f"no checkpoint in {self.dir} can be read, so this run cannot resume; they are left as they "
                f"were ({'; '.join(why for _, why in damaged)}). Move them away to start over, or pick a new "
                "hydra.run.dir")
        return like, None, []

    def _move_aside(self, epoch: int) -> Path:
        """checkpoints/<epoch> -> checkpoints/damaged/<epoch>-<UTC time> (renamed, not copied;
        on several processes only the first moves it)."""
        dest = self.dir / DAMAGED / f"{epoch}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        if jax.process_index() == 0:
            dest.parent.mkdir(parents=True, exist_ok=True)
            n = 1
            while dest.exists():
                dest, n = dest.with_name(f"{dest.name.split('.')[0]}.{n}"), n + 1
            (self.dir / str(epoch)).rename(dest)
        self.mngr.reload()
        return dest

    def close(self) -> None:
        self.mngr.close()
