"""One run over many devices and hosts: the device mesh, where the loop's arrays live
on it, and the jax.distributed set-up.

The mesh has two axes (config `mesh.replica` x `mesh.data` devices):
  replica  the member axis (train.replicas seeds x population members): a device holds
           the whole state of members/replica members. Members never exchange anything,
           so this axis needs no collective.
  data     the B parallel streams of a TBPTT batch: each device runs B/data streams of
           every member it holds. Parameters are replicated along it; XLA inserts the
           all-reduce of the loss and gradient sums (jit + NamedSharding: no pmap, no
           hand-written collective).

`train_loop(..., placement=Placement)` places the member-stacked state with
P('replica') (replicated along data), each epoch's inputs and each split with 'data' on
the axis the trainer names in `Trainer.data_axes` (replicated where it names none), and
jits the epoch and the evaluation with the state's sharding as output and the metrics
replicated, so every process can read them. With one device there is no Placement and
the loop runs exactly as before.

`loop_collectives(hlo_text)` counts the collectives of a compiled epoch by where they sit
(inside its loops, inside the innermost time loops, outside): a B-split epoch should have
only the per-update all-reduce of the gradients and loss sums in its loops
(tests/test_collectives.py, experiments/bench_scaling.py).

Several processes (`jax.distributed`): every process builds the same task and runs the
same program; each process hands JAX only the rows of its own devices
(`jax.make_array_from_process_local_data`). Process 0 writes the run dir's files; every
process takes part in orbax's save and restore (jaxdl.run.context).
"""
from __future__ import annotations

import hashlib
import os
import re

import numpy as np

AXES = ("replica", "data")


class MeshError(ValueError):
    """A mesh that does not fit the devices or the run; names the config key."""


# --------------------------------------------------------------------------- processes

def distributed_reason(dist: dict, env=None) -> str | None:
    """Why this run has several processes, or None: explicit dist.* settings, a SLURM step
    of several tasks (srun), or a TPU pod of several hosts."""
    env = os.environ if env is None else env
    if dist.get("coordinator"):
        return f"dist.coordinator={dist['coordinator']}"
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env and "SLURM_STEP_NODELIST" in env:
        return f"SLURM step of {env['SLURM_NTASKS']} tasks"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if "," in hosts:
        return f"TPU pod of {len(hosts.split(','))} hosts"
    return None


def init_distributed(dist: dict, env=None) -> str | None:
    """jax.distributed.initialize where the run has several processes (call it before any
    other JAX use); returns the reason, or None for a single process. Explicit settings
    (dist.coordinator, dist.num_processes, dist.process_id) are passed on; on SLURM and TPU
    pods JAX reads them from the environment. CPU collectives go through gloo."""
    reason = distributed_reason(dist, env)
    if reason is None:
        return None
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if dist.get("coordinator"):
        jax.distributed.initialize(coordinator_address=dist["coordinator"], num_processes=dist["num_processes"],
                                   process_id=dist["process_id"])
    else:
        jax.distributed.initialize()
    return reason


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any (a stop signal that reached one
    host stops all of them at the same epoch)."""
    import jax
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils
    return bool(np.asarray(multihost_utils.process_allgather(np.array([int(bool(flag))], np.int32))).any())


def same_on_all_processes(text: str, what: str, fix: str) -> None:
    """Raise MeshError when the processes disagree on `text` (e.g. the run dir)."""
    import jax
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int32)
    every = np.asarray(multihost_utils.process_allgather(digest)).reshape(jax.process_count(), -1)
    if not (every == every[0]).all():
        raise MeshError(f"the {jax.process_count()} processes of this run disagree on {what} "
                        f"(process {jax.process_index()}: {text}); {fix}")


# --------------------------------------------------------------------------- the mesh

def check_mesh(replica: int, data: int, members: int | None = None, streams: int | None = None,
               stream_tasks: tuple[str, ...] = ()) -> None:
    """The checks that need no devices (jaxdl.config runs them before any compute): -1 or
    >= 1, at most one -1, `members` (train.replicas x population) divisible by mesh.replica,
    `streams` (the B of a TBPTT batch; None: the trainer does not split its batches, so
    mesh.data must be 1) divisible by mesh.data. `stream_tasks`: the task names a refusal of
    mesh.data offers (the caller reads them from the task registry). Raises MeshError naming the key."""
    for key, v in (("mesh.replica", replica), ("mesh.data", data)):
        if not isinstance(v, int) or isinstance(v, bool) or v == 0 or v < -1:
            raise MeshError(f"{key}: must be an integer >= 1, or -1 for the devices left; got {v!r}")
    if replica == -1 and data == -1:
        raise MeshError("mesh.replica and mesh.data: at most one of them may be -1 (the devices left)")
    if streams is None and data != 1:
        raise MeshError(f"mesh.data={data}: this task's trainer does not split its batches along a data axis "
                        f"(only the stream tasks do: {', '.join(stream_tasks)}); use mesh.data=1, and "
                        f"mesh.replica for its members")
    if members is not None and replica > 0 and members % replica:
        raise MeshError(f"mesh.replica={replica}: the {members} members (train.replicas x population) do not split "
                        f"evenly over {replica} devices; use a divisor of {members}")
    if streams is not None and data > 0 and streams % data:
        raise MeshError(f"mesh.data={data}: the {streams} streams of a batch (task.streams, or task.batch for "
                        f"independent sequences) do not split evenly over {data} devices; use a divisor of {streams}")


def resolve_mesh(replica: int, data: int, devices: int, processes: int = 1, members: int | None = None,
                 streams: int | None = None) -> tuple[int, int]:
    """(replica, data) device counts, with -1 = the devices left. Raises MeshError naming
    mesh.replica or mesh.data when the mesh does not fit `devices`, fails check_mesh, or
    leaves devices of a multi-process run out."""
    check_mesh(replica, data, members, streams)
    if replica == -1:
        replica = devices // data
        if replica < 1:
            raise MeshError(f"mesh.replica=-1: no devices left beside mesh.data={data} ({devices} devices)")
    if data == -1:
        data = devices // replica
        if data < 1:
            raise MeshError(f"mesh.data=-1: no devices left beside mesh.replica={replica} ({devices} devices)")
    if replica * data > devices:
        raise MeshError(f"mesh.replica x mesh.data = {replica} x {data} = {replica * data} devices, but this run "
                        f"has {devices}; use at most {devices} (-1 takes the devices left)")
    if processes > 1 and replica * data != devices:
        raise MeshError(f"mesh.replica x mesh.data = {replica * data}: a run over {processes} processes must use "
                        f"all {devices} devices (each process feeds its own); set mesh.data=-1 or mesh.replica=-1")
    check_mesh(replica, data, members, streams)
    return replica, data


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # no affinity API (macOS)
        return os.cpu_count() or 1


ONE_THREAD_WORK = 1 << 23   # mesh.cpu_threads=0 asks for one thread below this k2 x streams x units^2


def cpu_threads_for(setting: int, hidden: int | None = None, devices: int = 1,
                    window_rows: int | None = None) -> int | None:
    """mesh.cpu_threads -> the threads to give XLA:CPU's intra-op pool (None: XLA's default,
    every core). 0 (auto): one thread for a recurrent model on one device whose update is
    small, window_rows (k2 x streams) x hidden^2 (the recurrent weight gradient's
    multiply-adds per gate) under ONE_THREAD_WORK: XLA:CPU splits none of its products, and
    its many small ops only pay the pool's hand-offs (the default job, 640 x 64^2 = 2.6e6: 985
    against 802 updates/s on one thread). Otherwise every core: larger updates gain from the
    second thread (the size sweep's step at 64 units, 3200 x 64^2 = 1.3e7: 6.6-6.8 against
    7.4-7.6 ms; the textgen task's default, 800 x 192^2 = 2.9e7: 110-113 against 105-109
    updates/s), and several CPU devices share the pool (docs/performance.md)."""
    if setting:
        return setting
    small = hidden is not None and window_rows is not None and window_rows * hidden * hidden < ONE_THREAD_WORK
    return 1 if small and devices == 1 else None


def cpu_threads_running(env=None) -> int:
    """The threads of XLA:CPU's intra-op pool: PJRT_NPROC (or NPROC) where set before JAX
    started, else the cores this process may use."""
    env = os.environ if env is None else env
    return int(env.get("PJRT_NPROC") or env.get("NPROC") or 0) or cores()


def ask_cpu_threads(n: int | None, explicit: bool, env=None) -> int | None:
    """Before JAX starts its backends: XLA:CPU's intra-op pool (Eigen and YNNPACK) gets n
    threads (PJRT_NPROC, which the CPU client reads once, when it is made). An auto choice
    (explicit False) leaves a PJRT_NPROC or NPROC already in the environment alone. With
    JAX already started (Hydra's basic launcher runs a sweep's jobs in one process) the
    pool cannot change: an explicit n other than the running pool's size is refused.
    Returns the count set, or None."""
    env = os.environ if env is None else env
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        running = cpu_threads_running(env)
        if explicit and n != running:
            raise MeshError(f"mesh.cpu_threads={n}: JAX's CPU backend in this process already runs {running} "
                            "threads (an earlier job of a sweep run in this process); give every job of the sweep "
                            "the same mesh.cpu_threads, or a launcher that starts a process per job "
                            "(hydra/launcher=joblib)")
        return None
    if n is None or (not explicit and ("PJRT_NPROC" in env or "NPROC" in env)):
        return None
    env["PJRT_NPROC"] = str(n)
    return n


def ask_cpu_devices(replica: int, data: int, env=None) -> int | None:
    """Before JAX starts its backends: a mesh of replica x data > 1 devices on a CPU gets
    that many CPU devices (jax_num_cpu_devices). One CPU device runs a program's steps
    on about one core; members (or streams) on separate CPU devices run on separate
    cores, so `mesh.replica=2` trains a population on both cores of a 2-core machine.
    Left as is: -1 sizes, a mesh of one device, more devices than the cores this
    process may use, XLA_FLAGS that already force a count, and JAX already started
    (resolve_mesh then names the missing devices). A machine with GPUs keeps its GPUs
    as the devices; only its CPU client gets the count. Returns the count set, or None."""
    env = os.environ if env is None else env
    n = replica * data
    if (replica < 1 or data < 1 or n == 1 or n > cores()
            or "xla_force_host_platform_device_count" in env.get("XLA_FLAGS", "")):
        return None
    import jax
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:        # backends already initialized: the count is what it is
        return None
    return n


def make_mesh(replica: int, data: int, devices=None):
    """A jax.sharding.Mesh of shape (replica, data) with axes ('replica', 'data') over the
    first replica*data devices (jax.devices(): ordered by process, so each process holds
    a contiguous block)."""
    import jax
    from jax.sharding import Mesh
    devs = list(jax.devices() if devices is None else devices)[: replica * data]
    if len(devs) < replica * data:
        raise MeshError(f"mesh.replica x mesh.data = {replica * data} devices, but {len(devs)} are available")
    return Mesh(np.array(devs, dtype=object).reshape(replica, data), AXES)


def placement_for(mesh_cfg: dict) -> "Placement | None":
    """The Placement of a mesh config {"replica", "data", "members", "streams"} (RunSpec.mesh;
    -1 resolved against this run's devices); None (the single-device path, unchanged) for
    one device in one process."""
    import jax
    r, d = resolve_mesh(mesh_cfg.get("replica", 1), mesh_cfg.get("data", 1), jax.device_count(),
                        jax.process_count(), mesh_cfg.get("members"), mesh_cfg.get("streams"))
    if r * d == 1 and jax.process_count() == 1:
        return None
    return Placement(make_mesh(r, d))


def _local_block(sharding, shape) -> tuple[slice, ...]:
    """The index block of a global array of `shape` that this process's devices hold."""
    idx = list(sharding.addressable_devices_indices_map(tuple(shape)).values())
    block = []
    for d, n in enumerate(shape):
        starts = [i[d].start or 0 for i in idx]
        stops = [n if i[d].stop is None else i[d].stop for i in idx]
        block.append(slice(min(starts), max(stops)))
    return tuple(block)


def to_global(a, sharding):
    """A global jax.Array of `a` (a full host or device array, the same on every process)
    laid out by `sharding`. One process: device_put. Several: each process passes only
    its own devices' block (jax.make_array_from_process_local_data)."""
    import jax
    if isinstance(a, jax.Array) and a.sharding == sharding:
        return a
    if jax.process_count() == 1:
        return jax.device_put(a, sharding)
    host = np.asarray(a)
    return jax.make_array_from_process_local_data(sharding, host[_local_block(sharding, host.shape)], host.shape)


class Placement:
    """Where the loop's arrays live on a mesh with axes ('replica', 'data').

    state(tree)         member-stacked state [M, ...] -> sharded P('replica'), replicated along data
    inputs(tree, axes)  epoch inputs or a split -> 'data' on axis `axes` of every leaf (an int),
                        or per subtree (a pytree prefix of ints/None); None: replicated
    jit_epoch(f)        jit with outputs (state: P('replica'), metrics: replicated)
    jit_eval(f)         jit with replicated outputs
    gather(tree)        a fully replicated copy (readable on every process)"""

    def __init__(self, mesh):
        from jax.sharding import NamedSharding, PartitionSpec as P
        self.mesh = mesh
        self.members = NamedSharding(mesh, P("replica"))
        self.replicated = NamedSharding(mesh, P())
        self._last_inputs: tuple = (None, None)

    @property
    def shape(self) -> dict:
        return dict(self.mesh.shape)

    def data_sharding(self, ndim: int, axis: int | None):
        from jax.sharding import NamedSharding, PartitionSpec as P
        if axis is None or self.mesh.shape["data"] == 1:
            return self.replicated
        if not -ndim <= axis < ndim:
            raise ValueError(f"data axis {axis} is outside an array of {ndim} dimensions (Trainer.data_axes)")
        spec = [None] * ndim
        spec[axis % ndim] = "data"
        return NamedSharding(self.mesh, P(*spec))

    def state(self, tree):
        import jax
        return jax.tree.map(lambda a: to_global(a, self.members), tree)

    def inputs(self, tree, axes=None):
        """Place `tree`; the same object as last time (a static training set) is placed once."""
        import jax
        if self._last_inputs[0] is tree:
            return self._last_inputs[1]

        def put(ax, sub):
            return jax.tree.map(lambda a: to_global(a, self.data_sharding(np.ndim(a), ax)), sub)
        if axes is None or isinstance(axes, int):
            placed = put(axes, tree)
        else:
            placed = jax.tree.map(put, axes, tree, is_leaf=lambda x: x is None)
        self._last_inputs = (tree, placed)
        return placed

    def jit_epoch(self, fn):
        import jax
        return jax.jit(fn, out_shardings=(self.members, self.replicated))

    def jit_eval(self, fn):
        import jax
        return jax.jit(fn, out_shardings=self.replicated)

    def gather(self, tree):
        import jax
        return jax.jit(lambda t: t, out_shardings=self.replicated)(tree)


# --------------------------------------------------------------------------- what XLA inserted

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def _hlo_computations(text: str) -> dict[str, list[str]]:
    """Compiled HLO text -> {computation name: its instruction lines}."""
    comps, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if m:
            cur = m.group(1)
            comps[cur] = []
        elif cur is not None:
            comps[cur].append(line)
    return comps


def _called(lines: list[str]) -> set[str]:
    """The computations these instruction lines call (loop bodies, fusions, reducers, branches)."""
    out = set()
    for line in lines:
        for m in re.finditer(r"\b(?:body|condition|to_apply|calls|true_computation|false_computation|"
                             r"branch_computations)=\{?([%\w.\-, ]+)\}?", line):
            out.update(n.strip().lstrip("%") for n in m.group(1).split(","))
    return out


def _closure(comps: dict, names) -> set[str]:
    """`names` and every computation they call, transitively."""
    seen, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n in seen or n not in comps:
            continue
        seen.add(n)
        todo += list(_called(comps[n]))
    return seen


def _count(lines: list[str]) -> dict[str, int]:
    """{collective: instructions of that kind in these lines} (async -start forms included)."""
    return {op: sum(len(re.findall(rf"\b{op}(?:-start)?\(", ln)) for ln in lines) for op in COLLECTIVES}


def loop_collectives(text: str) -> dict:
    """Collectives of a compiled program by where they sit: "loops" (everything a while
    body runs, nested loops included), "innermost" (the bodies of loops that contain no
    loop: the time steps), "outside" (the rest); each {op: count}."""
    comps = _hlo_computations(text)
    bodies = {m.group(1) for lines in comps.values() for ln in lines
              if (m := re.search(r"\bwhile\(.*?body=%?([\w.\-]+)", ln))}
    in_loops = _closure(comps, bodies)
    innermost = {b for b in bodies
                 if not any(re.search(r"\bwhile\(", ln) for c in _closure(comps, [b]) for ln in comps[c])}
    in_inner = _closure(comps, innermost)

    def total(names):
        out = dict.fromkeys(COLLECTIVES, 0)
        for n in names:
            for op, v in _count(comps[n]).items():
                out[op] += v
        return out
    return {"loops": total(in_loops), "innermost": total(in_inner),
            "outside": total(set(comps) - in_loops), "loop_count": len(bodies), "innermost_count": len(innermost)}
