"""Orbax checkpoints in <run_dir>/checkpoints, keyed by epoch.

The state pytree is saved as its flat list of leaves (orbax cannot store
zero-size arrays, which TBPTT's empty state tail is when k1 >= k2; those come
back from the target tree). Restore uses the abstract target (StandardRestore),
so optax states and NamedTuples come back with their own types; a restore is
bit-identical."""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


def _flat(tree) -> dict:
    return {f"{i:04d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree)) if np.size(leaf) > 0}


class Checkpointer:
    def __init__(self, directory: Path, max_to_keep: int = 2):
        self.dir = Path(directory).absolute()
        self.mngr = ocp.CheckpointManager(
            self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_handlers=ocp.StandardCheckpointHandler())  # named, so item_metadata works on reopen

    def latest_epoch(self) -> int | None:
        return self.mngr.latest_step()

    def save(self, epoch: int, state) -> None:
        self.mngr.save(epoch, args=ocp.args.StandardSave(_flat(state)))
        self.mngr.wait_until_finished()

    def restore(self, epoch: int, like):
        """Restore the checkpoint of `epoch` into the structure of `like`. A checkpoint whose
        arrays do not match `like` (another model or optimizer) raises ValueError before
        any array is read."""
        want = _flat(like)
        saved = {k: tuple(getattr(v, "shape", ())) for k, v in self.mngr.item_metadata(epoch).items()}
        mine = {k: tuple(np.shape(v)) for k, v in want.items()}
        if saved != mine:
            diff = next((k for k in sorted(saved.keys() | mine.keys()) if saved.get(k) != mine.get(k)))
            raise ValueError(f"checkpoint {self.dir / str(epoch)} holds {len(saved)} arrays and this state "
                             f"{len(mine)}; array {diff} is {saved.get(diff, 'absent')} there and "
                             f"{mine.get(diff, 'absent')} here")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, want)
        got = self.mngr.restore(epoch, args=ocp.args.StandardRestore(abstract))
        leaves, treedef = jax.tree.flatten(like)
        out = [got.get(f"{i:04d}", leaf) if np.size(leaf) > 0 else leaf for i, leaf in enumerate(leaves)]
        return jax.tree.unflatten(treedef, out)

    def close(self) -> None:
        self.mngr.close()

