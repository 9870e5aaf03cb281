"""One run's outputs in one place: the run dir, metrics.jsonl, orbax checkpoints,
wandb. Trainers take a RunContext and never see Hydra."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from jaxdl.run.checkpoint import Checkpointer, CheckpointMismatch
from jaxdl.run.lock import RunLock, lock_run_dir
from jaxdl.run.records import read_epoch_record, write_epoch_record
from jaxdl.run.metrics import MetricsLog, final_and_best
from jaxdl.run.mesh import any_process

MID = "mid"          # checkpoints/mid/<global update>: mid-epoch checkpoints (state, the epoch's stats so far)


class ProcessRows:
    """metrics.jsonl as a process other than 0 of a multi-process run keeps it: read from
    process 0's file when the run starts, then kept in memory (only process 0 writes)."""

    def __init__(self, path: Path):
        self._rows = MetricsLog(path).read()

    def read(self) -> list[dict]:
        return list(self._rows)

    def truncate_after(self, epoch: int) -> None:
        self._rows = [r for r in self._rows if r.get("epoch", 0) <= epoch]

    def settle(self, epoch: int, backup: dict) -> list[str]:
        self.truncate_after(epoch)         # process 0 repairs the file; these are its rows
        return []

    def append(self, *rows: dict) -> None:
        self._rows.extend(json.loads(json.dumps(r, default=float)) for r in rows)


@dataclass
class RunContext:
    run_dir: Path
    logger: object | None = None          # WandbLogger or None
    checkpoint_every: int = 1             # epochs
    progress: bool = True
    stop_flag: object | None = None       # jaxdl.run.signals.StopFlag: preemption requests
    metrics: MetricsLog = field(init=False)
    ckpt: Checkpointer = field(init=False)
    lock: RunLock = field(init=False)
    primary: bool = field(init=False)     # process 0 (jax.distributed): the one that writes files
    launch: object | None = None          # jaxdl.run.launches.Launch: this launch's record (process 0)
    _mid: Checkpointer | None = field(init=False, default=None)  # checkpoints/mid, made when first needed
    backed_up: int = field(init=False, default=0)  # the last epoch whose rows progress.json holds

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.primary = jax.process_index() == 0
        # one writer per run dir: RunDirBusy names the other (the other processes of a
        # multi-process run write no files of their own)
        self.lock = lock_run_dir(self.run_dir) if self.primary else RunLock(self.run_dir)
        try:
            self.metrics = (MetricsLog if self.primary else ProcessRows)(self.run_dir / "metrics.jsonl")
            self.ckpt = Checkpointer(self.run_dir / "checkpoints")
        except BaseException:
            self.lock.release()
            raise

    def log(self, row: dict, member_rows: list[dict] = ()) -> None:
        """One epoch: its row (means over members) and, with several members, one row per
        member (with "member": i) in metrics.jsonl; the mean row goes to wandb."""
        self.metrics.append(row, *member_rows)
        if self.logger is not None and self.primary:
            self.logger.log({k: v for k, v in row.items() if k not in ("step",)}, step=int(row["step"]))

    def rows(self) -> list[dict]:
        """The mean rows logged so far (not the per-member ones)."""
        return [r for r in self.metrics.read() if "member" not in r]

    def last_checkpoint(self) -> int | None:
        return self.ckpt.latest_epoch()

    def stop_requested(self) -> str | None:
        """The name of a stop signal received during this run (SIGTERM, ...), or None. With
        several processes, all stop when any received one."""
        name = self.stop_flag.name if self.stop_flag is not None and self.stop_flag.requested else None
        if jax.process_count() > 1 and any_process(name is not None) and name is None:
            name = "a stop signal to another process"
        return name

    def write_summary(self, extra: dict, higher_is_better: dict[str, bool], final_extra: dict | None = None) -> dict:
        """summary.json: final and best of every metric in metrics.jsonl (plus `final_extra`,
        metrics a task computes after training), the run's facts in `extra`."""
        final, best = final_and_best(self.metrics.read(), higher_is_better)
        final.update(final_extra or {})
        devs = jax.devices()
        from jaxdl.run.provenance import hydra_overrides, provenance
        summary = {"final": final, "best": best, **extra,
                   "jax_version": jax.__version__,
                   "devices": [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in devs]}
        # what produced the run (commit, git.diff if dirty, lock, versions, host, overrides, start)
        if self.launch is not None:
            summary["launches"] = self.launch.segments(self._last_epoch())
        if "provenance" not in summary:
            summary["provenance"] = provenance(hydra_overrides(), self.run_dir if self.primary else None)
        if not self.primary:
            return summary
        with (self.run_dir / "summary.json").open("w") as f:
            json.dump(summary, f, indent=2, default=float)
        if self.logger is not None:
            self.logger.summary({f"final/{k}": v for k, v in final.items()})
            self.logger.summary({f"best/{k}": v for k, v in best.items()})
        return summary

    def finish(self, extra: dict, per_member: dict, higher_is_better: dict[str, bool],
               final_extra: dict | None = None) -> dict:
        """summary.json with the per-replica values and their mean and std (if any)."""
        if per_member:
            extra = {**extra, "per_member": per_member,
                     "member_stats": {k: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                                       for k, v in per_member.items()}}
        return self.write_summary(extra, higher_is_better, final_extra)

    @property
    def mid(self) -> Checkpointer:
        """checkpoints/mid: the mid-epoch checkpoints, keyed by global update (made on first use)."""
        if self._mid is None:
            self._mid = Checkpointer(self.run_dir / "checkpoints" / MID, max_to_keep=1)
        return self._mid

    def _has_mid(self) -> bool:
        return self._mid is not None or (self.run_dir / "checkpoints" / MID).is_dir()

    def _rows_since_backup(self, epoch: int) -> list[dict]:
        rows = [r for r in self.metrics.read() if self.backed_up < r.get("epoch", 0) <= epoch]
        self.backed_up = max(self.backed_up, epoch)
        return rows

    def save_checkpoint(self, epoch: int, state, **progress) -> None:
        """Orbax checkpoint of `state`, plus progress.json (wall time, and a copy of the rows
        logged since the previous checkpoint, from which a damaged metrics.jsonl is rebuilt),
        which lives outside the checkpoint so that restored state is bit-identical. Mid-epoch
        checkpoints before it are deleted."""
        self.ckpt.save(epoch, state)               # every process takes part; orbax coordinates
        if self.primary:
            write_epoch_record(self.run_dir / "progress.json", epoch,
                               {**progress, "rows": self._rows_since_backup(epoch)})
        if self._has_mid():
            for step in self.mid.mngr.all_steps():
                self.mid.mngr.delete(step)

    def save_mid(self, epoch: int, update: int, state, partial, wall_time_s: float) -> None:
        """A checkpoint inside epoch `epoch` + 1, after `update` of its updates: the state and
        the epoch's per-update statistics so far (`partial`), at checkpoints/mid/<global
        update>, with its record (epoch, update, wall time, rows) in checkpoints/mid/progress.json."""
        steps = self._steps_per_epoch(partial)
        step = epoch * steps + update
        self.mid.save(step, (state, partial))
        if self.primary:
            write_epoch_record(self.mid.dir / "progress.json", step,
                               {"epoch": epoch, "update": update, "wall_time_s": wall_time_s,
                                "rows": self._rows_since_backup(epoch)}, keep=2)

    @staticmethod
    def _steps_per_epoch(partial) -> int:
        leaf = jax.tree.leaves(partial)[0]
        return int(np.shape(leaf)[1 if np.ndim(leaf) > 1 else 0])

    def _restore(self, ckpt: Checkpointer, like):
        try:
            return ckpt.restore_newest(like)
        except CheckpointMismatch as err:
            raise ValueError(
                f"{self.run_dir} holds checkpoints of another model or optimizer, so this run cannot resume "
                f"from it ({err}); rerun with the overrides that wrote it, or pick a new hydra.run.dir") from err

    def _settle(self, epoch: int) -> None:
        """metrics.jsonl cut to epochs 1..epoch, each once (see MetricsLog.settle)."""
        backup: dict[int, list[dict]] = {}
        for path in (self.run_dir / "progress.json", self.run_dir / "checkpoints" / MID / "progress.json"):
            try:
                records = json.loads(path.read_text()) if path.exists() else {}
            except ValueError:
                print(f"[jaxdl] warning: {path} is damaged; metrics rows cannot be rebuilt from it", file=sys.stderr)
                records = {}
            for rec in records.values():
                for r in rec.get("rows", ()) if isinstance(rec, dict) else ():
                    backup.setdefault(int(r["epoch"]), []).append(r)
        for note in self.metrics.settle(epoch, backup):
            print(f"[jaxdl] notice: {note}", file=sys.stderr)
        self.backed_up = max((e for e in backup if e <= epoch), default=0)

    def resume(self, state) -> tuple[object, int, float]:
        """(state, start_epoch, wall_time_s): restored from the newest readable checkpoint
        if there is one, else as given; metrics.jsonl then holds exactly the epochs before
        start_epoch (rows logged after it dropped, damaged ones rebuilt or named). Newer
        checkpoints that cannot be read are moved to checkpoints/damaged/, named on stderr."""
        state, last, moved = self._restore(self.ckpt, state)
        for epoch, why, dest in moved:
            print(f"[jaxdl] warning: {why}; moved it to {dest} and resuming from epoch {last}", file=sys.stderr)
        self._settle(last or 0)
        self._started_at(last or 0)
        if last is None:
            return state, 0, 0.0
        print(f"[jaxdl] resumed from {self.ckpt.dir} at epoch {last}")
        return state, last, self.read_progress(last).get("wall_time_s", 0.0)

    def resume_chunked(self, state, partial_like) -> tuple[object, int, int, object, float]:
        """resume() for a loop that cuts epochs into chunks: (state, epochs done, updates done
        of the next epoch, that epoch's statistics so far (shaped as partial_like) or None,
        wall_time_s), from the newest of the epoch and mid-epoch checkpoints."""
        last_epoch = self.ckpt.latest_epoch()
        steps = self._steps_per_epoch(partial_like)
        mid_steps = [s for s in (self.mid.mngr.all_steps() if self._has_mid() else ())
                     if s > (last_epoch or 0) * steps]
        if mid_steps:
            (got, partial), step, moved = self._restore(self.mid, (state, partial_like))
            for _, why, dest in moved:
                print(f"[jaxdl] warning: {why}; moved it to {dest}", file=sys.stderr)
            if step is not None and step > (last_epoch or 0) * steps:
                rec = read_epoch_record(self.mid.dir / "progress.json", step) or {}
                epoch, update = divmod(step, steps)
                self._settle(epoch)
                self._started_at(epoch)
                print(f"[jaxdl] resumed from {self.mid.dir / str(step)} in epoch {epoch + 1} at update {update} "
                      f"of {steps}")
                return got, epoch, update, partial, rec.get("wall_time_s", 0.0)
        state, start, wall = self.resume(state)
        return state, start, 0, None, wall

    def _last_epoch(self) -> int:
        return max((r.get("epoch", 0) for r in self.metrics.read()), default=0)

    def _started_at(self, epoch: int) -> None:
        if self.launch is not None:
            self.launch.start(epoch)

    def read_progress(self, epoch: int) -> dict:
        return read_epoch_record(self.run_dir / "progress.json", epoch) or {}

    def close(self) -> None:
        try:
            if self.launch is not None:
                try:
                    self.launch.end(self._last_epoch())
                except OSError:
                    pass                        # a full or vanished disk: the run reports that itself
            if self._mid is not None:
                self._mid.close()
            self.ckpt.close()
        finally:
            self.lock.release()
