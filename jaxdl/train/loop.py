"""The one training loop: every task, from the perceptron to the char-LSTM, trains
through `train_loop`.

The loop owns everything run-level: the member axis (replicas: independent seeds
trained together by one vmapped, jitted program), resume from the recorder's last
checkpoint, the epochs and their timing (the first epoch after a (re)start includes
compilation and is not timed), the progress bar or per-epoch lines, the divergence
stop naming epoch and step, the evaluation cadence, the stop-on-rise rule, the
preemption stop at an epoch boundary, checkpoints, and one metrics row per epoch
handed to the recorder as the epoch ends (metrics.jsonl and wandb for a Hydra run,
the history of a Keras-style fit).

A trainer supplies pure functions of ONE member and nothing run-level (`Trainer`).
The loop vmaps them over members; a leading member axis is on every leaf of the
state it keeps.
"""
from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.train.errors import Preempted, TrainingDiverged


class Trainer(NamedTuple):
    """What a trainer hands the loop: pure functions of one member.

    init(key, hp) -> state                 a member's state (params, optimizer state, ...); hp holds
                                           the member's population values ({} without one)
    train_epoch(state, inputs) -> (state, {"losses": [S] per update, "metrics": {name: scalar}})
    evaluate(state, split) -> {name: scalar}
    epoch_inputs(epoch) -> inputs          what every member reads in that epoch (data, keys);
                                           host side, so a reshuffle may use numpy
    splits: {"val": split, "test": split}  evaluated every `eval_every` epochs and at the end
    steps_per_epoch: updates per epoch of one member
    announce(epoch, row) -> str | None     a line to print after an evaluation (optional)
    data_axes: the data-parallel axis of the epoch inputs and of every split (the B axis of a
               TBPTT batch [N, T, B, ...]): an int for every leaf, or a pytree prefix of
               ints/None; None: not split, replicated along the mesh's `data` axis
               (jaxdl.run.mesh)
    """
    init: Callable
    train_epoch: Callable
    evaluate: Callable
    epoch_inputs: Callable
    splits: dict
    steps_per_epoch: int
    announce: Callable | None = None
    data_axes: Any = None


class Recorder(Protocol):
    """Where the loop's rows and checkpoints go (RunContext for a Hydra run, FitRecorder
    for a Keras-style fit)."""
    checkpoint_every: int

    def resume(self, state) -> tuple[Any, int, float]: ...            # (state, start epoch, wall s)
    def rows(self) -> list[dict]: ...                                  # mean rows logged so far
    def log(self, row: dict, member_rows: list[dict]) -> None: ...
    def save_checkpoint(self, epoch: int, state, wall_time_s: float) -> None: ...
    def last_checkpoint(self) -> int | None: ...                       # its label, for messages
    def stop_requested(self) -> str | None: ...                        # a signal's name, or None


class LoopResult(NamedTuple):
    state: Any                  # final state, member axis first (none when members is None)
    per_member: dict            # metric -> [members] values of the last epoch and evaluation
    epochs_run: int
    stopped_early_at: int | None
    wall_time_s: float
    steps_per_s: float | None   # member-updates per second over the timed epochs
    epoch_time_s: float | None  # mean seconds per timed epoch


def init_members(trainer: Trainer, seed: int, members: int, hparams: dict | None = None,
                 replica_of=None):
    """The member-stacked initial state. hparams {key: [M]} (jaxdl.train.population);
    replica_of [M]: the replica (seed index) of each member (default: member i is replica i)."""
    reps = jnp.arange(members) if replica_of is None else jnp.asarray(replica_of)
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(reps)
    return jax.vmap(trainer.init)(keys, hparams or {})


class Progress:
    """verbose 0: silent; 1: a tqdm bar; 2: one line per epoch (Keras' verbose=2)."""

    def __init__(self, verbose: int, start: int, epochs: int, desc: str, label: Callable[[str], str],
                 show: tuple | None = None):
        self.verbose, self.epochs, self.label, self.show = verbose, epochs, label, show
        self.bar = None
        if verbose == 1:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=epochs, initial=start, desc=desc, unit="epoch", dynamic_ncols=True)

    def update(self, epoch: int, row: dict, rate: float | None) -> None:
        shown = {self.label(k): v for k, v in row.items()
                 if k not in ("epoch", "step") and (self.show is None or k in self.show)}
        if self.bar is not None:
            post = {k: f"{v:.4f}" for k, v in shown.items()}
            if rate:
                post["upd/s"] = f"{rate:.0f}"
            self.bar.update(1)
            self.bar.set_postfix(post)
        elif self.verbose == 2:
            print(f"Epoch {epoch}/{self.epochs} - " + " - ".join(f"{k}: {v:.4f}" for k, v in shown.items()))

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        elif self.verbose:
            print(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _first_bad(losses) -> int | None:
    """Index of the first non-finite per-update loss ([members, S] or [S]), or None."""
    bad = ~np.isfinite(np.asarray(losses))
    if not bad.any():
        return None
    return int(np.nonzero(bad.reshape(-1, bad.shape[-1]).any(0))[0][0])


def _means(metrics: dict, prefix: str) -> tuple[dict, dict]:
    """{name: [M] or scalar} -> (row values: means over members, per-member lists)."""
    per = {f"{prefix}/{k}": np.atleast_1d(np.asarray(v, np.float64)) for k, v in metrics.items()}
    return {k: float(v.mean()) for k, v in per.items()}, {k: v.tolist() for k, v in per.items()}


def train_loop(trainer: Trainer, run: Recorder, *, epochs: int, seed: int = 0,
               members: int | None = 1, state=None, eval_every: int = 1,
               stop_on_rise: str | None = None, higher_is_better: bool = False,
               verbose: int = 1, desc: str = "train",
               label: Callable[[str], str] = lambda k: k, show: tuple | None = None,
               hparams: dict | None = None, replica_of=None, placement=None,
               schedule: Callable | None = None) -> LoopResult:
    """Train `members` copies (seeds fold_in(seed, r)) of a trainer for `epochs` epochs.

    Member r's init key is fold_in(PRNGKey(seed), replica_of[r]) (default r): it does not
    depend on how many members train beside it, so a member equals a run of its own.
    hparams {key: [M]} are the members' population values, handed to trainer.init.
    members=None trains one state without a member axis (a Keras-style fit, which
    passes its own `state`). stop_on_rise names a metric (e.g. "val/error"): training
    stops after the evaluation where it got worse than at the previous evaluation
    (the seed's rule; `higher_is_better` gives the direction). `label` renames metrics
    and `show` picks the metrics the bar or lines show (None: all), for display only.
    placement (jaxdl.run.mesh.Placement; None: one device, as always): lays the state,
    each epoch's inputs and the splits out on a device mesh (members along `replica`,
    trainer.data_axes along `data`); XLA inserts the collectives.
    schedule (jaxdl.search.run.SearchRun.schedule; None: none): called after each epoch's
    rows are logged and before its checkpoint, `state, per_member = schedule(epoch + 1,
    state, per_member)`; it may replace the state (PBT) or keep fewer members on the
    leading axis (halving: the jitted epoch retraces for the new count; the epoch after a
    change is not timed). Rows go on naming members by their slot on that axis."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if state is None:
        state = init_members(trainer, seed, members or 1, hparams, replica_of)
    vm = (lambda f, axes: jax.vmap(f, in_axes=axes)) if members is not None else (lambda f, axes: f)
    jit_epoch, jit_eval = (jax.jit, jax.jit) if placement is None else (placement.jit_epoch, placement.jit_eval)
    run_epoch = jit_epoch(vm(trainer.train_epoch, (0, None)))
    evaluate = jit_eval(vm(trainer.evaluate, (0, None)))
    splits = dict(trainer.splits)
    place_inputs = lambda x: x
    if placement is not None:          # placed before resume too: orbax restores into this layout
        if members is None:
            raise ValueError("a device mesh lays out a member axis; train with members >= 1")
        state = placement.state(state)
        splits = {k: placement.inputs(v, trainer.data_axes) for k, v in splits.items()}
        place_inputs = lambda x: placement.inputs(x, trainer.data_axes)

    state, start, wall = run.resume(state)
    if placement is not None:
        state = placement.state(state)
    member_axis = members is not None and members > 1          # rows per member, as many as there are now
    n_members = jax.tree.leaves(state)[0].shape[0] if members is not None else 1
    untimed = start
    prev = None
    if stop_on_rise:
        prev = next((r[stop_on_rise] for r in reversed(run.rows()) if stop_on_rise in r), None)
    progress = Progress(verbose, start, epochs, desc, label, show)
    timed_epochs, timed_s, timed_updates = 0, 0.0, 0
    per_member: dict = {}
    stopped = None
    epoch = start
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            new_state, out = run_epoch(state, place_inputs(trainer.epoch_inputs(epoch)))
            losses = np.asarray(out["losses"])            # waits for the epoch to finish
            dt = time.perf_counter() - t0
            bad = _first_bad(losses)
            if bad is not None:
                raise TrainingDiverged(epoch + 1, epoch * trainer.steps_per_epoch + bad + 1, run.last_checkpoint())
            state = new_state
            wall += dt
            if epoch > untimed:                           # the first epoch after (re)start compiles
                timed_epochs += 1
                timed_s += dt
                timed_updates += trainer.steps_per_epoch * n_members
            row = {"epoch": epoch + 1, "step": (epoch + 1) * trainer.steps_per_epoch}
            vals, per_member_train = _means(out["metrics"], "train")
            row.update(vals)
            per_member.update(per_member_train)
            evaluated = (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
            if evaluated:
                for split, data in splits.items():
                    vals, per = _means(evaluate(state, data), split)
                    row.update(vals)
                    per_member.update(per)
            member_rows = []
            if member_axis:
                member_rows = [{"epoch": row["epoch"], "step": row["step"], "member": i,
                                **{k: v[i] for k, v in per_member.items() if k in row}}
                               for i in range(n_members)]
            run.log(row, member_rows)
            rate = (timed_updates / timed_s) if timed_s else None
            progress.update(epoch + 1, row, rate)
            if evaluated and trainer.announce is not None:
                line = trainer.announce(epoch + 1, row)
                if line:
                    progress.write(line)
            rose = False
            if evaluated and stop_on_rise and stop_on_rise in row:
                v = row[stop_on_rise]
                rose = prev is not None and (v < prev if higher_is_better else v > prev)
                if rose:
                    progress.write(f"[jaxdl] {stop_on_rise} got worse ({prev:.4f} -> {v:.4f}): stopping")
                    stopped = epoch + 1
                prev = v
            if schedule is not None:
                state, per_member = schedule(epoch + 1, state, per_member)
                if jax.tree.leaves(state)[0].shape[0] != n_members:
                    n_members, untimed = jax.tree.leaves(state)[0].shape[0], epoch + 1
                if placement is not None:
                    state = placement.state(state)
            signal_name = run.stop_requested()
            if (epoch + 1) % run.checkpoint_every == 0 or epoch + 1 == epochs or rose or signal_name:
                run.save_checkpoint(epoch + 1, state, wall_time_s=wall)
            if signal_name:
                raise Preempted(epoch + 1, signal_name)
            if rose:
                break
    finally:
        progress.close()
    return LoopResult(state, per_member, epoch + 1 if epochs > start else start, stopped, wall,
                      (timed_updates / timed_s) if timed_s else None,
                      (timed_s / timed_epochs) if timed_epochs else None)
