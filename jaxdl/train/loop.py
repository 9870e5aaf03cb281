"""The one training loop: every task, from the perceptron to the char-LSTM, trains
through `train_loop`.

The loop owns everything run-level: the member axis (replicas: independent seeds
trained together by one vmapped, jitted program), resume from the recorder's last
checkpoint, the epochs and their timing (the first epoch after a (re)start includes
compilation and is not timed), the progress bar or per-epoch lines, the divergence
stop naming epoch and step, the evaluation cadence, the stop-on-rise rule, the
preemption stop, checkpoints, and one metrics row per epoch handed to the recorder as
the epoch ends (metrics.jsonl and wandb for a Hydra run, the history of a Keras-style fit).

Chunks: a trainer that offers `train_chunk` trains an epoch as a sequence of jitted
chunks of updates, each sized to take about `Chunking.seconds`; the stop flag is read
between chunks, so a stop request is honoured within seconds however long the epoch,
with a mid-epoch checkpoint (also every `Chunking.checkpoint_every_s`). A relaunch
resumes at that update, bit-identical to an uninterrupted run: the epoch's inputs are a
function of the epoch (seeded shuffles), and the per-update statistics of the epoch so
far travel in the checkpoint, reduced once at the epoch end whatever the chunking.

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

from jaxdl.run import budget
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
    updates_per_epoch: updates per epoch of one member
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
    updates_per_epoch: int
    announce: Callable | None = None
    data_axes: Any = None
    train_chunk: Callable | None = None
    epoch_metrics: Callable | None = None


# train_chunk(state, inputs, start, count) -> (state, {"losses": [S], "parts": pytree of [S, ...]})
#     updates start .. start+count-1 of the epoch (both traced: one compile for every chunk;
#     start + count <= S = updates_per_epoch); outputs per update of the epoch, set at
#     [start, start+count); running [0, c1), [c1, c2), ... trains what train_epoch trains
# epoch_metrics(parts [updates_per_epoch, ...]) -> {name: scalar}: the epoch's train metrics
# Trainers without them (workflow fits, classifier, perceptron) train whole epochs per call.


class Chunking(NamedTuple):
    """How the loop cuts epochs of a trainer with `train_chunk` (train.chunk_s,
    train.checkpoint_every_s)."""
    seconds: float | None = 2.0             # target seconds per chunk; None: one chunk per epoch
    updates: int | None = None              # a fixed number of updates per chunk (overrides seconds)
    checkpoint_every_s: float | None = None  # also checkpoint mid-epoch this often (None: never)


def balanced_size(total: int, most: int) -> int:
    """The chunk size that cuts `total` updates into the fewest chunks of at most `most`
    updates, as even as can be: ceil(total / ceil(total / most))."""
    most = max(1, min(int(most), total))
    n = -(-total // most)
    return -(-total // n)


class Recorder(Protocol):
    """Where the loop's rows and checkpoints go (RunContext for a Hydra run, FitRecorder
    for a Keras-style fit)."""
    checkpoint_every: int

    def resume(self, state) -> tuple[Any, int, float]: ...            # (state, start epoch, wall s)
    def rows(self) -> list[dict]: ...                                  # mean rows logged so far
    def log(self, row: dict, member_rows: list[dict]) -> None: ...
    def save_checkpoint(self, epoch: int, state, wall_time_s: float) -> None: ...
    # optional, for chunked epochs (RunContext has them):
    #   resume_chunked(state, partial_like) -> (state, epochs done, update in the next epoch, partial, wall s)
    #   save_mid(epoch, update, state, partial, wall_time_s): a checkpoint inside epoch `epoch` + 1
    def last_checkpoint(self) -> int | None: ...                       # its label, for messages
    def stop_requested(self) -> str | None: ...                        # a signal's name, or None


class MemoryRecorder:
    """A Recorder that keeps what the loop logs in memory and writes nothing: train_loop
    without a run dir (studies, benchmarks, tests). `logged` holds one
    {"row": mean row, "members": member rows} per evaluation; it never checkpoints."""
    checkpoint_every = 10 ** 9

    def __init__(self):
        self.logged: list[dict] = []

    def resume(self, state):
        return state, 0, 0.0

    def rows(self) -> list[dict]:
        return []

    def log(self, row: dict, member_rows: list[dict]) -> None:
        self.logged.append({"row": row, "members": member_rows})

    def save_checkpoint(self, *args, **kwargs) -> None:
        pass

    def last_checkpoint(self) -> None:
        return None

    def stop_requested(self) -> None:
        return None


class LoopResult(NamedTuple):
    state: Any                  # final state, member axis first (none when members is None)
    per_member: dict            # metric -> [members] values of the last epoch and evaluation
    epochs_run: int
    stopped_early_at: int | None
    wall_time_s: float
    updates_per_s: float | None   # member-updates per second over the timed epochs
    epoch_time_s: float | None  # mean seconds per timed epoch
    pruned_at: int | None = None  # the epoch after which `prune` stopped the run


def init_members(trainer: Trainer, seed: int, members: int, hparams: dict | None = None,
                 replica_of=None):
    """The member-stacked initial state. hparams {key: [M]} (jaxdl.train.population);
    replica_of [M]: the replica (seed index) of each member (default: member i is replica i)."""
    reps = jnp.arange(members) if replica_of is None else jnp.asarray(replica_of)
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(reps)
    return jax.vmap(trainer.init)(keys, hparams or {})


class Progress:
    """What the loop shows, made by its caller: verbose 0: silent; 1: a tqdm bar titled
    `desc`; 2: one line per epoch (Keras' verbose=2). `label` renames metrics and `show`
    picks the ones shown (None: all). The loop calls begin(start, epochs) once."""

    def __init__(self, verbose: int = 0, desc: str = "train", label: Callable[[str], str] = lambda k: k,
                 show: tuple | None = None):
        self.verbose, self.desc, self.label, self.show = verbose, desc, label, show
        self.bar, self.epochs = None, 0

    def begin(self, start: int, epochs: int) -> None:
        self.epochs = epochs
        if self.verbose == 1:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=epochs, initial=start, desc=self.desc, unit="epoch", dynamic_ncols=True)

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


def wait_ready(tree) -> None:
    """Wait for a dispatched computation by polling (`is_ready`), not blocking inside XLA, so
    the main thread returns to Python every few ms and signal handlers run at once (a second
    Ctrl-C aborts at once, jaxdl.run.signals)."""
    leaves = [a for a in jax.tree.leaves(tree) if hasattr(a, "is_ready")]
    pause = 1e-4
    while not all(a.is_ready() for a in leaves):
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _signature(args) -> tuple:
    """The shapes and dtypes of a call's array arguments: which compiled program serves it."""
    return tuple((tuple(a.shape), str(a.dtype)) if hasattr(a, "shape") else (type(a).__name__,)
                 for a in jax.tree.leaves(args))


class _Checked:
    """A jitted function compiled once per argument signature (shapes, dtypes), the first
    through budget.check_program (refused if its temporaries cannot fit the device) when
    `check`; later calls of a signature run its compiled program. `ahead(*args)` compiles
    for `args` (arrays or jax.ShapeDtypeStruct) on a background thread; a call of that
    signature waits for it instead of compiling again (halving's next member counts)."""

    def __init__(self, fn: Callable, check: bool = True):
        self.jitted, self.check = fn, check
        self.programs: dict = {}          # signature -> compiled program, or a Future of one

    def _compile(self, *args):
        lowered = self.jitted.lower(*args)
        return budget.check_program(lowered) if self.check else lowered.compile()

    def __call__(self, *args):
        key = _signature(args)
        prog = self.programs.get(key)
        if prog is None:
            prog = self.programs[key] = self._compile(*args)
        elif hasattr(prog, "result"):
            prog = self.programs[key] = prog.result()
        try:
            return prog(*args)
        except TypeError:             # arguments laid out otherwise than at the compile
            return self.jitted(*args)

    def ahead(self, pool, *args) -> None:
        key = _signature(args)
        if key not in self.programs:
            self.programs[key] = pool.submit(self._compile, *args)

    def lower(self, *args):
        return self.jitted.lower(*args)


def _resized(state, n: int):
    """jax.ShapeDtypeStruct of the member-stacked `state` with `n` members, its layout kept."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((n,) + tuple(x.shape[1:]), x.dtype,
                                                       sharding=getattr(x, "sharding", None)), state)


class _Groups:
    """A rung's n members as ceil(n / size) groups of `size` that the same compiled programs
    train one after another (train_loop's `group`); the last group is filled up with copies
    of member n - 1, whose results are dropped. size None: one group, the state as it is.
    Split and joined on the host and put back with jax.device_put (jnp.asarray of a host
    array compiles a program per shape), as halving's survivors are gathered
    (jaxdl.search.run.take), so nothing compiles per member count; `place` lays each group
    out (a mesh)."""

    def __init__(self, n: int, size: int | None, place: Callable = lambda s: s):
        self.n, self.place = n, place
        self.size = None if size is None or size == n else size
        self.count = 1 if self.size is None else -(-n // self.size)

    def split(self, tree, place: bool = True) -> list:
        """[n, ...] leaves -> `count` trees of [size, ...] leaves."""
        if self.size is None:
            return [tree]
        idx = np.minimum(np.arange(self.count * self.size), self.n - 1).reshape(self.count, self.size)
        host = jax.tree.map(np.asarray, tree)
        out = [jax.tree.map(lambda a: a[i], host) for i in idx]
        return [self.place(jax.device_put(t)) for t in out] if place else out

    def outputs(self, trees):
        """Per-group outputs (member axis first) -> the n members' (host arrays); one group's as they are."""
        if self.size is None:
            return trees[0]
        return jax.tree.map(lambda *a: np.concatenate([np.asarray(x) for x in a])[:self.n], *trees)

    def join(self, groups):
        """The groups' state -> the [n, ...] state."""
        if self.size is None:
            return groups[0]
        return self.place(jax.device_put(self.outputs(groups)))

    def run(self, fn, groups: list, *args):
        """fn(group, *args) -> (group, out) on every group (all dispatched, then read):
        (the new groups, the n members' out)."""
        res = [fn(g, *args) for g in groups]
        return [r[0] for r in res], self.outputs([r[1] for r in res])

    def apply(self, fn, groups: list, *args):
        """fn(group, *args) -> out on every group: the n members' out."""
        return self.outputs([fn(g, *args) for g in groups])


class _Chunks:
    """The jitted chunk function of one run (one compile: start and count are traced) and
    the chunk size in use: fixed, or measured once (two calls of one update, the second
    timed) so that a chunk takes about `seconds`. Every process of a multi-process run
    uses process 0's size, so all reach the same chunk boundaries."""

    def __init__(self, trainer: Trainer, vm, jit_epoch, chunking: Chunking):
        self.trainer, self.chunking = trainer, chunking
        total = trainer.updates_per_epoch
        self.size = (balanced_size(total, chunking.updates) if chunking.updates
                     else None if chunking.seconds else total)
        self.fn = _Checked(jit_epoch(vm(trainer.train_chunk, (0, None, None, None))))

    def next(self, groups: _Groups, state: list, inputs, pos: int):
        """(state, out, count) of the chunk that starts at update `pos` of the epoch, for
        every group of `groups` (`state`: theirs)."""
        S = self.trainer.updates_per_epoch
        if self.size is None and pos + 2 <= S:
            state, first = groups.run(self.fn, state, inputs, np.int32(pos), np.int32(1))     # compiles
            wait_ready(state)
            t0 = time.perf_counter()
            state, out = groups.run(self.fn, state, inputs, np.int32(pos + 1), np.int32(1))
            wait_ready(out)
            out = jax.tree.map(lambda a, b: a + b, first, out)   # each is zero outside its own update
            per_update = max(time.perf_counter() - t0, 1e-6)
            size = balanced_size(S, self.chunking.seconds / per_update)
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils
                size = int(multihost_utils.broadcast_one_to_all(np.int32(size)))
            self.size = size
            return state, out, 2
        count = min(self.size or S, S - pos)
        state, out = groups.run(self.fn, state, inputs, np.int32(pos), np.int32(count))
        wait_ready(out)
        return state, out, count


class LoopPlan(NamedTuple):
    """What train_loop trains: `epochs` epochs of `members` members (None: one state without
    a member axis, a Keras-style fit); member r's init key is fold_in(PRNGKey(seed),
    replica_of[r]) (default r) and its population values hparams {key: [M]} (handed to
    trainer.init); evaluation every `eval_every` epochs; stop_on_rise names a metric (e.g.
    "val/error") whose getting worse (per `higher_is_better`) stops training (the source
    text's rule); chunking cuts the epochs of a trainer with `train_chunk`."""
    epochs: int
    seed: int = 0
    members: int | None = 1
    hparams: dict | None = None
    replica_of: Any = None
    eval_every: int = 1
    stop_on_rise: str | None = None
    higher_is_better: bool = False
    chunking: Chunking = Chunking()


def train_loop(trainer: Trainer, run: Recorder, plan: LoopPlan, state=None, placement=None,
               schedule: Callable | None = None, progress: Progress | None = None,
               prune: Callable | None = None, ahead: tuple = (), group: int | None = None) -> LoopResult:
    """Train plan.members copies of a trainer for plan.epochs epochs (LoopPlan).

    Member r's init key does not depend on how many members train beside it, so a member
    equals a run of its own. `state`: a given initial state (a Keras-style fit passes its
    own). placement (jaxdl.run.mesh.Placement; None: one device, as always): lays the state,
    each epoch's inputs and the splits out on a device mesh (members along `replica`,
    trainer.data_axes along `data`); XLA inserts the collectives.
    schedule (jaxdl.search.run.SearchRun.schedule; None: none): called after each epoch's
    rows are logged and before its checkpoint, `state, per_member = schedule(epoch + 1,
    state, per_member)`; it may replace the state (PBT) or keep fewer members on the
    leading axis (halving: the jitted epoch retraces for the new count; the epoch after a
    change is not timed). Rows go on naming members by their slot on that axis.
    progress: what to show (Progress; None: nothing).
    prune (jaxdl.search.trial.StudyTrial.hook; None: none): called after each evaluated
    epoch's rows are logged, `prune(epoch + 1, row, per_member)`; True stops the run there
    with a checkpoint (LoopResult.pruned_at), before the schedule's decision.
    ahead: member counts the schedule will cut the state to (halving's rungs,
    SearchRun.counts_ahead): their epoch, evaluation and metric programs compile on a
    background thread while the first rung trains, so a rung starts without compiling.
    group (SearchRun.group_size; None: all members at once): train the members `group` at a
    time: n members run as ceil(n / group) groups, one after another, through the programs
    compiled once for `group` members (_Groups), so a rung of any count compiles nothing;
    `ahead` is then not needed."""
    epochs, seed, members, hparams, replica_of = plan.epochs, plan.seed, plan.members, plan.hparams, plan.replica_of
    eval_every, stop_on_rise, higher_is_better, chunking = (plan.eval_every, plan.stop_on_rise,
                                                             plan.higher_is_better, plan.chunking)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if state is None:             # refused before anything is allocated if it cannot fit
        budget.check_state(jax.eval_shape(lambda: init_members(trainer, seed, members or 1, hparams, replica_of)))
        state = init_members(trainer, seed, members or 1, hparams, replica_of)
    vm = (lambda f, axes: jax.vmap(f, in_axes=axes)) if members is not None else (lambda f, axes: f)
    jit_epoch, jit_eval = (jax.jit, jax.jit) if placement is None else (placement.jit_epoch, placement.jit_eval)
    S = trainer.updates_per_epoch
    chunked = trainer.train_chunk is not None and hasattr(run, "save_mid")
    step_axis = 1 if members is not None else 0
    evaluate = _Checked(jit_eval(vm(trainer.evaluate, (0, None))), check=False)
    splits = dict(trainer.splits)
    place_inputs = lambda x: x
    if placement is not None:          # placed before resume too: orbax restores into this layout
        if members is None:
            raise ValueError("a device mesh lays out a member axis; train with members >= 1")
        state = placement.state(state)
        splits = {k: placement.inputs(v, trainer.data_axes) for k, v in splits.items()}
        place_inputs = lambda x: placement.inputs(x, trainer.data_axes)

    pos, partial = 0, None
    # the programs are traced here, at the shape the epochs run (a group's, when grouped): the
    # trace is reused then, and the first epoch's time (wall_time_s) is its compilation and
    # training on both paths
    m = jax.tree.leaves(state)[0].shape[0] if members is not None else None
    probe = _resized(state, group) if members is not None and group and group < m else state
    if chunked:
        chunks = _Chunks(trainer, vm, jit_epoch, chunking)
        finish = _Checked(jax.jit(vm(trainer.epoch_metrics, (0,))), check=False)
        shapes = jax.eval_shape(chunks.fn.jitted, probe, place_inputs(trainer.epoch_inputs(0)),
                                np.int32(0), np.int32(1))
        like = jax.tree.map(lambda a: np.zeros(((m,) if m is not None else ()) + a.shape[bool(m is not None):],
                                               a.dtype), shapes[1]["parts"])
        state, start, pos, partial, wall = run.resume_chunked(state, like)
    else:
        run_epoch = _Checked(jit_epoch(vm(trainer.train_epoch, (0, None))))
        jax.eval_shape(run_epoch.jitted, probe, place_inputs(trainer.epoch_inputs(0)))
        state, start, wall = run.resume(state)
    if placement is not None:
        state = placement.state(state)
    member_axis = members is not None and members > 1          # rows per member, as many as there are now
    n_members = jax.tree.leaves(state)[0].shape[0] if members is not None else 1
    pool = None
    group = group if members is not None else None
    ahead = tuple(n for n in ahead if members is not None and n < n_members and group is None)
    place = placement.state if placement is not None else (lambda s: s)
    groups = _Groups(n_members, group, place)
    state_g = groups.split(state)            # the state as groups; `state` is it joined

    def compile_ahead(state, inputs) -> None:
        """Queue the programs of the member counts in `ahead` on a background thread (after
        the first epoch, so they do not compete with its compilation)."""
        nonlocal pool
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(1, thread_name_prefix="jaxdl-compile-ahead")
        for n in ahead:
            resized = _resized(state, n)
            if chunked:
                chunks.fn.ahead(pool, resized, inputs, np.int32(0), np.int32(1))
                finish.ahead(pool, _resized(like, n))
            else:
                run_epoch.ahead(pool, resized, inputs)
            for data in splits.values():
                evaluate.ahead(pool, resized, data)
    untimed = start
    prev = None
    if stop_on_rise:
        prev = next((r[stop_on_rise] for r in reversed(run.rows()) if stop_on_rise in r), None)
    progress = progress or Progress()
    progress.begin(start, epochs)
    timed_epochs, timed_s, timed_updates = 0, 0.0, 0
    per_member: dict = {}
    stopped = pruned_at = None
    epoch = start
    last_save = time.monotonic()

    def cut(tree, a, b):
        """Updates a..b-1 of per-update outputs (host arrays)."""
        return jax.tree.map(lambda x: np.asarray(x)[(slice(None),) * step_axis + (slice(a, b),)], tree)

    def chunked_epoch(state, epoch, pos, partial):
        """The epoch from update `pos` on, chunk by chunk, of the groups' `state`: (state,
        out) as train_epoch's; stops mid-epoch with a checkpoint when asked (Preempted)."""
        nonlocal last_save
        inputs = place_inputs(trainer.epoch_inputs(epoch))
        done = [cut(partial, 0, pos)] if pos else []
        t_start = time.perf_counter()
        while pos < S:
            state, out, n = chunks.next(groups, state, inputs, pos)
            bad = _first_bad(cut(out["losses"], pos, pos + n))
            if bad is not None:
                raise TrainingDiverged(epoch + 1, epoch * S + pos + bad + 1, run.last_checkpoint())
            done.append(cut(out["parts"], pos, pos + n))
            pos += n
            if pos < S:
                signal_name = run.stop_requested()
                every = chunking.checkpoint_every_s
                due = bool(every) and time.monotonic() - last_save >= every
                if jax.process_count() > 1 and every:
                    from jax.experimental import multihost_utils
                    due = bool(multihost_utils.broadcast_one_to_all(np.bool_(due)))
                if signal_name or due:
                    so_far = jax.tree.map(lambda *a: np.concatenate(a, axis=step_axis), *done)
                    padded = jax.tree.map(lambda a: np.concatenate(
                        [a, np.zeros(a.shape[:step_axis] + (S - pos,) + a.shape[step_axis + 1:], a.dtype)],
                        axis=step_axis), so_far)
                    run.save_mid(epoch, pos, groups.join(state), padded, wall + time.perf_counter() - t_start)
                    last_save = time.monotonic()
                if signal_name:
                    raise Preempted(epoch + 1, signal_name, update=(pos, S))
        parts = jax.tree.map(lambda *a: np.concatenate(a, axis=step_axis), *done)
        return state, {"losses": np.zeros((1,)), "metrics": groups.apply(finish, groups.split(parts, place=False))}

    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            if chunked:
                new_state, out = chunked_epoch(state_g, epoch, pos, partial)
                pos, partial = 0, None
            else:
                new_state, out = groups.run(run_epoch, state_g, place_inputs(trainer.epoch_inputs(epoch)))
                wait_ready(out)
                bad = _first_bad(np.asarray(out["losses"]))     # waits for the epoch to finish
                if bad is not None:
                    raise TrainingDiverged(epoch + 1, epoch * S + bad + 1, run.last_checkpoint())
            jax.block_until_ready(out["metrics"])
            dt = time.perf_counter() - t0
            if ahead and pool is None:
                compile_ahead(new_state[0], place_inputs(trainer.epoch_inputs(epoch)))
            state_g = new_state
            state = groups.join(state_g)
            wall += dt
            if epoch > untimed:                           # the first epoch after (re)start compiles
                timed_epochs += 1
                timed_s += dt
                timed_updates += S * n_members
            row = {"epoch": epoch + 1, "step": (epoch + 1) * S}
            vals, per_member_train = _means(out["metrics"], "train")
            row.update(vals)
            per_member.update(per_member_train)
            evaluated = (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
            if evaluated:
                for split, data in splits.items():
                    vals, per = _means(groups.apply(evaluate, state_g, data), split)
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
            pruned = evaluated and prune is not None and bool(prune(epoch + 1, row, per_member))
            if pruned:
                progress.write(f"[jaxdl] pruned by the study after epoch {epoch + 1}")
                pruned_at = epoch + 1
            elif schedule is not None:
                new_state, per_member = schedule(epoch + 1, state, per_member)
                if new_state is not state:
                    n = jax.tree.leaves(new_state)[0].shape[0]
                    if n != n_members and group is None:      # a new program: its first epoch compiles
                        untimed = epoch + 1
                    n_members, state = n, place(new_state)
                    groups = _Groups(n_members, group, place)
                    state_g = groups.split(state)
            signal_name = run.stop_requested()
            if (epoch + 1) % run.checkpoint_every == 0 or epoch + 1 == epochs or rose or pruned or signal_name:
                run.save_checkpoint(epoch + 1, state, wall_time_s=wall)
                last_save = time.monotonic()
            if signal_name:
                raise Preempted(epoch + 1, signal_name)
            if rose or pruned:
                break
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return LoopResult(state, per_member, epoch + 1 if epochs > start else start, stopped, wall,
                      (timed_updates / timed_s) if timed_s else None,
                      (timed_s / timed_epochs) if timed_epochs else None, pruned_at)
