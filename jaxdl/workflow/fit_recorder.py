"""Where a Keras-style `fit` keeps what jaxdl's training loop records: the history
{metric: [per epoch]} under Keras' names (loss, mae, val_loss, ...) and, with a
checkpoint_dir, orbax checkpoints with the history so far beside them (history.json),
as Keras' BackupAndRestore does."""
from __future__ import annotations

from pathlib import Path

from jaxdl.run.records import read_epoch_record, write_epoch_record


def keras_name(key: str) -> str:
    """"train/loss" -> "loss", "val/mae" -> "val_mae" (Keras' history keys)."""
    split, _, name = key.partition("/")
    return name if split == "train" else f"{split}_{name}"


class FitRecorder:
    """A Recorder (jaxdl.train.loop) for `Compiled.fit`.

    resume=True restores the latest checkpoint and its history and continues from there;
    without it, a fit starts at epoch 0 and its checkpoints are numbered after those
    already in the directory (epochs keep counting across fit calls)."""

    def __init__(self, checkpoint_dir, checkpoint_every: int, resume: bool, epochs: int, stateful: bool):
        self.ckpt = None
        if checkpoint_dir is not None:
            from jaxdl.run.checkpoint import Checkpointer      # orbax loads only when checkpointing
            self.ckpt = Checkpointer(Path(checkpoint_dir))
        self.checkpoint_every = checkpoint_every
        self.resume_wanted, self.epochs, self.stateful = resume, epochs, stateful
        self.history: dict[str, list] = {}
        self.last = self.ckpt.latest_epoch() if self.ckpt else None
        self.base = 0 if resume else (self.last or 0)

    def _tree(self, state: dict) -> dict:
        tree = {"params": state["params"], "opt_state": state["opt_state"]}
        if self.stateful:
            tree["state"] = state["state"]
        return tree

    def resume(self, state):
        if not (self.resume_wanted and self.last is not None):
            return state, 0, 0.0
        try:
            got = self.ckpt.restore(self.last, self._tree(state))
        except Exception as err:
            raise ValueError(
                f"the checkpoint of epoch {self.last} in {self.ckpt.dir} does not fit this model ({err}); "
                "resume with the model and optimizer that wrote it, or use a new checkpoint_dir") from err
        path = self.ckpt.dir / "history.json"
        history = read_epoch_record(path, self.last)
        if history is None:
            raise ValueError(f"{path} has no history for epoch {self.last}; the checkpoint was not written by "
                             "fit, or the file was removed: use a new checkpoint_dir to start over")
        self.history = history
        print(f"[jaxdl] fit resumed from {self.ckpt.dir} at epoch {self.last}")
        return {**state, **got}, min(self.last, self.epochs), 0.0

    def rows(self) -> list[dict]:
        return []

    def log(self, row: dict, member_rows=()) -> None:
        for k, v in row.items():
            if k not in ("epoch", "step"):
                self.history.setdefault(keras_name(k), []).append(v)

    def save_checkpoint(self, epoch: int, state, wall_time_s: float = 0.0) -> None:
        """The history up to `epoch` (history.json; Python's float repr round-trips, so a
        resumed history is exact), then the orbax checkpoint. The previous history is
        kept too, so a kill between the two writes still finds the latest checkpoint's."""
        if self.ckpt is None:
            return
        label = self.base + epoch
        write_epoch_record(self.ckpt.dir / "history.json", label, self.history, keep=2)
        self.ckpt.save(label, self._tree(state))
        self.last = label

    def last_checkpoint(self) -> int | None:
        return self.last

    def stop_requested(self) -> str | None:
        return None

    def close(self) -> None:
        if self.ckpt is not None:
            self.ckpt.close()
