"""One run over many devices and processes (jaxdl.run.mesh): the mesh config is checked
before any compute; results do not depend on the layout (mesh.data=4, mesh.replica=4
against one device, per member, 1e-5); checkpoints of a sharded run restore onto
the same mesh, another mesh and one device; real Hydra runs on 4 forced CPU devices; and
two local processes with two devices each (jax.distributed over gloo) against one
process with four.

Forced CPU devices need XLA_FLAGS before JAX starts, so those tests run in subprocesses:
`python -m tests.test_mesh loop` is the in-process worker (train_loop and RunContext on 4
devices), and the Hydra runs are `python -m jaxdl.main`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxdl.configure import ConfigError, parse
from jaxdl.run.mesh import (MeshError, ask_cpu_devices, ask_cpu_threads, cores, cpu_threads_for, distributed_reason,
                            placement_for, resolve_mesh)
from tests.helpers import ROOT, compose_cfg

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}
ENV.pop("XLA_FLAGS", None)
ECHO = ["task.length=200", "task.streams=8", "task.test_length=200", "task.val_length=100", "model.hidden=16",
        "train.epochs=2", "train.replicas=8", "train.progress=false"]
METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "test/loss", "test/accuracy")


def devices_env(n: int) -> dict:
    return {**ENV, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}


# ----------------------------------------------------------------- checks before compute

@pytest.mark.parametrize("overrides, key", [
    (["train.replicas=6", "mesh.replica=4"], "mesh.replica=4: the 6 members"),
    (["train.replicas=2", "population.optim.lr=[0.1,0.2,0.3]", "mesh.replica=4"], "mesh.replica=4: the 6 members"),
    (["task.streams=6", "mesh.data=4"], "mesh.data=4: the 6 streams"),
    (["task=adding", "task.batch=64", "mesh.data=3"], "mesh.data=3: the 64 streams"),
    (["mesh.replica=-1", "mesh.data=-1"], "mesh.replica and mesh.data"),
    (["mesh.replica=0"], "mesh.replica:"),
    (["mesh.data=-2"], "mesh.data:"),
    (["mesh.cpu_threads=-1"], "mesh.cpu_threads:"),
    (["+mesh.model=2"], "mesh.model:"),
    (["task=digits", "model=mlp", "mesh.data=2"], "mesh.data=2: this task's trainer does not split"),
    (["dist.coordinator=localhost:1234"], "dist.num_processes:"),
    (["dist.num_processes=2", "dist.process_id=0"], "dist.coordinator:"),
    (["dist.coordinator=nohost", "dist.num_processes=2", "dist.process_id=0"], "dist.coordinator:"),
    (["dist.coordinator=localhost:1234", "dist.num_processes=2", "dist.process_id=2"], "dist.process_id:"),
])
def test_bad_mesh_and_dist_settings_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        parse(compose_cfg(overrides))


def test_good_settings_parse_to_plain_values():
    spec = parse(compose_cfg(["train.replicas=4", "population.optim.lr=[0.1,0.2]", "mesh.replica=-1",
                              "mesh.data=2", "dist.coordinator=localhost:1234", "dist.num_processes=2",
                              "dist.process_id=1"]))
    assert spec.mesh == {"replica": -1, "data": 2, "members": 8, "streams": 32, "cpu_threads": None,
                         "cpu_threads_setting": 0}
    assert spec.dist == {"coordinator": "localhost:1234", "num_processes": 2, "process_id": 1}
    assert parse(compose_cfg([])).mesh == {"replica": 1, "data": 1, "members": 1, "streams": 32, "cpu_threads": 1,
                                           "cpu_threads_setting": 0}
    assert parse(compose_cfg(["model.hidden=512"])).mesh["cpu_threads"] is None          # every core
    assert parse(compose_cfg(["tbptt.k1=50", "tbptt.k2=100"])).mesh["cpu_threads"] is None   # 3200 x 64^2
    assert parse(compose_cfg(["task=digits", "model=mlp"])).mesh["cpu_threads"] is None   # not recurrent
    set2 = parse(compose_cfg(["mesh.cpu_threads=2"])).mesh
    assert set2["cpu_threads"] == 2 and set2["cpu_threads_setting"] == 2
    assert parse(compose_cfg([])).dist == {}


def test_resolve_mesh_against_the_devices():
    assert resolve_mesh(-1, 2, 8, members=4, streams=32) == (4, 2)
    assert resolve_mesh(2, -1, 8, members=4, streams=32) == (2, 4)
    assert resolve_mesh(1, 1, 8) == (1, 1)                     # fewer devices than there are is fine
    with pytest.raises(MeshError, match="2 x 4 = 8 devices, but this run has 4"):
        resolve_mesh(2, 4, 4, streams=8)
    with pytest.raises(MeshError, match="must use all 4 devices"):
        resolve_mesh(1, 2, 4, processes=2, streams=8)
    with pytest.raises(MeshError, match="the 6 members"):
        resolve_mesh(-1, 1, 4, members=6)                      # -1 -> 4, which does not divide 6
    with pytest.raises(MeshError, match="the 12 streams"):
        resolve_mesh(1, -1, 8, streams=12)
    with pytest.raises(MeshError, match="no devices left"):
        resolve_mesh(-1, 8, 4, streams=8)


def test_one_device_keeps_the_single_device_path():
    assert placement_for({"replica": 1, "data": 1, "members": 8, "streams": 32}) is None
    assert placement_for({"replica": -1, "data": 1, "members": 8, "streams": 32}) is None   # this process: 1 device


def test_processes_are_detected_from_the_environment():
    slurm = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "1", "SLURM_STEP_NODELIST": "n[1-2]"}
    assert distributed_reason({}, slurm) == "SLURM step of 4 tasks"
    assert distributed_reason({}, {**slurm, "SLURM_NTASKS": "1"}) is None          # a one-task job
    assert distributed_reason({}, {k: v for k, v in slurm.items() if k != "SLURM_PROCID"}) is None  # sbatch, no srun
    assert distributed_reason({}, {"TPU_WORKER_HOSTNAMES": "a,b,c,d"}) == "TPU pod of 4 hosts"
    assert distributed_reason({}, {"TPU_WORKER_HOSTNAMES": "a"}) is None
    assert distributed_reason({"coordinator": "h:1"}, {}) == "dist.coordinator=h:1"
    assert distributed_reason({}, {}) is None


def test_a_mesh_larger_than_the_machine_fails_before_any_compute(tmp_path):
    # more devices than cores: jaxdl makes no CPU devices for it (ask_cpu_devices), so one device is all there is
    n = 1 << (2 * cores() - 1).bit_length()
    echo = [a for a in ECHO if not a.startswith("task.streams=")] + [f"task.streams={n}"]
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", *echo, f"mesh.data={n}", f"hydra.run.dir={tmp_path}/r"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert f"config error: mesh.replica x mesh.data = 1 x {n} = {n} devices, but this run has 1" in p.stderr
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_cpu_threads_auto_is_one_for_small_updates_on_one_device():
    assert cpu_threads_for(0, 64, 1, 20 * 32) == 1                # the default job: 640 x 64^2 = 2.6e6
    assert cpu_threads_for(0, 64, 1, 100 * 32) is None            # 1.3e7: every core (XLA's default)
    assert cpu_threads_for(0, 192, 1, 25 * 32) is None            # the textgen task's default, 2.9e7
    assert cpu_threads_for(0, 16, 1, 8 * 20) == 1
    assert cpu_threads_for(0, 64, 1, None) is None and cpu_threads_for(0, None, 1, 640) is None   # not a stream
    assert cpu_threads_for(0, 64, 2, 640) is None and cpu_threads_for(0, 64, -2, 640) is None     # a mesh
    assert cpu_threads_for(3, 64, 1, 640) == 3 and cpu_threads_for(1, 1024, 4, 1 << 20) == 1       # a set value


_THREADS = """
import collections, json, os
from jaxdl.run.mesh import ask_cpu_threads
asked = ask_cpu_threads(%r, %r)
import jax.numpy as jnp
(jnp.ones((256, 256)) @ jnp.ones((256, 256))).block_until_ready()
names = collections.Counter(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
print(json.dumps({"asked": asked, "pool": names["tf_XLAEigen"], "env": os.environ.get("PJRT_NPROC")}))
"""


def _threads(n, explicit, env):
    p = subprocess.run([sys.executable, "-c", _THREADS % (n, explicit)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_cpu_threads_size_xlas_pool_before_jax_starts():
    if not os.path.exists("/proc/self/task") or cores() < 2:
        pytest.skip("counts the pool's threads in /proc (Linux) against 2 or more cores")
    env = {k: v for k, v in ENV.items() if k not in ("PJRT_NPROC", "NPROC")}
    assert _threads(1, False, env) == {"asked": 1, "pool": 1, "env": "1"}
    assert _threads(None, False, env) == {"asked": None, "pool": cores(), "env": None}      # every core
    # auto leaves the environment's choice alone; a set value replaces it
    assert _threads(1, False, {**env, "PJRT_NPROC": "2"}) == {"asked": None, "pool": 2, "env": "2"}
    assert _threads(1, True, {**env, "PJRT_NPROC": "2"}) == {"asked": 1, "pool": 1, "env": "1"}


def test_cpu_threads_cannot_change_once_jax_has_started():
    import jax
    jax.devices()                                     # this process's backend is up
    env = {}
    running = cores()
    assert ask_cpu_threads(1, False, env) is None and env == {}        # auto: what runs is kept
    assert ask_cpu_threads(running, True, env) is None                 # the same count: nothing to do
    with pytest.raises(MeshError, match=rf"mesh.cpu_threads={running + 1}: .* already runs {running} threads"):
        ask_cpu_threads(running + 1, True, env)


_ASK = """
import json, jax
from jaxdl.run.mesh import ask_cpu_devices
out = {"asked": [ask_cpu_devices(r, d) for r, d in %r]}
out["devices"] = jax.device_count()
out["after_start"] = ask_cpu_devices(1, 2)   # JAX has started: the same count is a no-op, another is refused
print(json.dumps(out))
"""


def _ask(meshes, env):
    p = subprocess.run([sys.executable, "-c", _ASK % (meshes,)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_cpu_mesh_gets_a_device_per_slot_before_jax_starts(tmp_path):
    if cores() < 2:
        pytest.skip("one core: a CPU mesh of 2 devices is left to XLA_FLAGS here (ask_cpu_devices needs 2 cores)")
    assert _ask([(2, 1)], ENV) == {"asked": [2], "devices": 2, "after_start": 2}
    # -1 sizes and one-device meshes ask for nothing; after JAX started, 2 devices cannot be had
    assert _ask([(-1, 1), (1, -1), (1, 1)], ENV) == {"asked": [None, None, None], "devices": 1, "after_start": None}
    assert _ask([(2, 1)], devices_env(3)) == {"asked": [None], "devices": 3, "after_start": None}   # XLA_FLAGS win
    assert ask_cpu_devices(cores() + 1, 1) is None                                 # more than the cores
    # the entry point asks before JAX starts: two members on two CPU devices, no XLA_FLAGS
    echo = [a for a in ECHO if not a.startswith(("train.epochs=", "train.replicas="))]
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", *echo, "train.epochs=1", "train.replicas=2",
                        "mesh.replica=2", f"hydra.run.dir={tmp_path}/r"], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["mesh"] == {"replica": 2, "data": 1, "processes": 1, "cpu_threads": cores()}   # a mesh: every core
    assert len(summary["devices"]) == 2


# ----------------------------------------------------------------- 4 devices, in-process loop

def _loop_worker() -> dict:
    """Runs with 4 forced CPU devices: the TBPTT trainer through train_loop + RunContext on
    one device (3 epochs) and on meshes (1, 4) and (4, 1) (2 epochs); resumes of the (4, 1)
    run's epoch-2 checkpoint onto (4, 1), (2, 2), (1, 4) and one device (epoch 3); an adding
    task (reset=batch: new, reshuffled inputs every epoch) on (1, 4)."""
    import shutil
    import tempfile

    import jax

    from jaxdl.run.context import RunContext
    from jaxdl.run.mesh import Placement, make_mesh
    from jaxdl.config import OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.tasks.synthetic import AddingConfig, EchoConfig, adding, echo
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, train_loop
    from jaxdl.train.tbptt_trainer import tbptt_trainer

    assert jax.device_count() == 4, jax.devices()
    tmp = Path(tempfile.mkdtemp())
    tr = tbptt_trainer(echo(EchoConfig(lag=5, length=200, streams=8, test_length=200, val_length=100), 0),
                       RecurrentConfig(hidden=16), OptimConfig(), TBPTTConfig(k1=10, k2=20), TrainConfig())

    def run(name, mesh, epochs, resume_from=None):
        if resume_from:
            shutil.copytree(tmp / resume_from, tmp / name)
        ctx = RunContext(tmp / name, None, checkpoint_every=2, progress=False)
        try:
            res = train_loop(tr, ctx, LoopPlan(epochs, members=8),
                             placement=None if mesh is None else Placement(make_mesh(*mesh)))
        finally:
            ctx.close()
        leaf = jax.tree.leaves(res.state["params"])[0]
        return {"rows": [r for r in ctx.metrics.read() if "member" in r],
                "spec": list(leaf.sharding.spec) if mesh else None,
                "mesh": dict(leaf.sharding.mesh.shape) if mesh else None,
                "devices": len(leaf.sharding.device_set)}

    out = {"ref": run("ref", None, 3)}
    for name, mesh in (("data4", (1, 4)), ("replica4", (4, 1))):
        out[name] = run(name, mesh, 2)
    for name, mesh in (("resume_4x1", (4, 1)), ("resume_2x2", (2, 2)), ("resume_1x4", (1, 4)),
                       ("resume_one", None)):
        out[name] = run(name, mesh, 3, resume_from="replica4")

    add = adding(AddingConfig(length=20, train_size=64, test_size=32, batch=16, val_size=16), 0)
    at = tbptt_trainer(add, RecurrentConfig(hidden=8), OptimConfig(), TBPTTConfig(k1=20, k2=20, reset="batch"),
                       TrainConfig())
    for name, pl in (("adding_one", None), ("adding_data4", Placement(make_mesh(1, 4)))):
        res = train_loop(at, MemoryRecorder(), LoopPlan(3, members=2), placement=pl)
        out[name] = res.per_member
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def subprocesses(tmp_path_factory):
    """Every subprocess of this module, started at once (they share the cores): the loop
    worker on 4 devices and five `python -m jaxdl.main`: one device; 4 devices with
    mesh.data=4; 4 devices with mesh.replica=4; and one run of two processes with 2 devices
    each and mesh.data=4 (jax.distributed over gloo). -> (tmp dir, {name: (Popen, log path)})."""
    tmp = tmp_path_factory.mktemp("mesh_runs")
    port = _free_port()
    off = "logger.mode=disabled"
    jobs = {"loop": (devices_env(4), ["-m", "tests.test_mesh", "loop"]),
            "one": (ENV, [off], None), "data4": (devices_env(4), [off, "mesh.data=4"], None),
            "replica4": (devices_env(4), [off, "mesh.replica=4"], None)}
    for i in range(2):
        jobs[f"proc{i}"] = (devices_env(2), ["mesh.data=4", "logger.mode=offline", f"dist.coordinator=localhost:{port}",
                                             "dist.num_processes=2", f"dist.process_id={i}"], "two")
    procs = {}
    try:
        for name, job in jobs.items():
            env, args = job[0], job[1]
            if name != "loop":
                args = ["-m", "jaxdl.main", *ECHO, *args, f"hydra.run.dir={tmp / (job[2] or name)}"]
            with open(tmp / f"{name}.log", "w") as log, open(tmp / f"{name}.err", "w") as err:
                proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log,
                                        stderr=err if name == "loop" else subprocess.STDOUT)
                procs[name] = (proc, tmp / f"{name}.log")
        yield tmp, procs
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _finished(procs, name) -> str:
    p, log = procs[name]
    rc = p.wait(timeout=900)
    text = log.read_text()
    assert rc == 0, f"{name} exit {rc}:\n{text[-4000:]}{log.with_suffix('.err').read_text()[-4000:]}"
    return text


@pytest.fixture(scope="module")
def loop_runs(subprocesses):
    return json.loads(_finished(subprocesses[1], "loop").strip().splitlines()[-1])


def _by_member_epoch(rows):
    return {(r["member"], r["epoch"]): r for r in rows}


def _assert_same_rows(got, ref, epochs):
    g, r = _by_member_epoch(got), _by_member_epoch(ref)
    for m in range(8):
        for e in epochs:
            for k in METRICS:
                np.testing.assert_allclose(g[m, e][k], r[m, e][k], rtol=1e-5, atol=1e-7,
                                           err_msg=f"member {m} epoch {e} {k}")


@pytest.mark.parametrize("name, mesh", [("data4", {"replica": 1, "data": 4}), ("replica4", {"replica": 4, "data": 1})])
def test_results_do_not_depend_on_the_layout(loop_runs, name, mesh):
    run = loop_runs[name]
    # params: members along `replica`, replicated along `data`
    assert run["spec"] == ["replica"] and run["mesh"] == mesh and run["devices"] == 4
    _assert_same_rows(run["rows"], loop_runs["ref"]["rows"], epochs=(1, 2))
    losses = [_by_member_epoch(run["rows"])[m, 2]["train/loss"] for m in range(8)]
    assert len(set(losses)) == 8                     # eight different seeds, not one member copied


@pytest.mark.parametrize("name, mesh", [("resume_4x1", {"replica": 4, "data": 1}),
                                        ("resume_2x2", {"replica": 2, "data": 2}),
                                        ("resume_1x4", {"replica": 1, "data": 4}),
                                        ("resume_one", None)])
def test_a_sharded_checkpoint_restores_onto_any_mesh(loop_runs, name, mesh):
    run = loop_runs[name]
    assert run["mesh"] == mesh and run["devices"] == (4 if mesh else 1)
    epochs = sorted({r["epoch"] for r in run["rows"]})
    assert epochs == [1, 2, 3] and len(run["rows"]) == 24        # resumed at 2: epochs 1-2 are not rerun
    _assert_same_rows(run["rows"], loop_runs["ref"]["rows"], epochs=(1, 2, 3))


def test_new_inputs_every_epoch_are_split_along_data(loop_runs):
    one, four = loop_runs["adding_one"], loop_runs["adding_data4"]
    assert set(one) == set(four) and "test/loss" in one
    for k in one:
        np.testing.assert_allclose(four[k], one[k], rtol=1e-5, atol=1e-7, err_msg=k)


# ----------------------------------------------------------------- real Hydra runs, processes

@pytest.fixture(scope="module")
def hydra_runs(subprocesses):
    tmp, procs = subprocesses
    out = {name: _finished(procs, name) for name in ("one", "data4", "replica4", "proc0", "proc1")}
    runs = {name: json.loads((tmp / name / "summary.json").read_text()) for name in ("one", "data4", "replica4", "two")}
    rows = {name: [json.loads(line) for line in (tmp / name / "metrics.jsonl").read_text().splitlines()]
            for name in runs}
    return runs, rows, out, tmp


def _assert_same_per_replica(a: dict, b: dict, rtol=1e-5):
    assert set(a["per_member"]) == set(b["per_member"])
    for k in a["per_member"]:
        np.testing.assert_allclose(a["per_member"][k], b["per_member"][k], rtol=rtol, atol=1e-7, err_msg=k)


def test_hydra_runs_on_four_devices_match_one_device(hydra_runs):
    runs, rows, _, _ = hydra_runs
    assert runs["one"]["mesh"] == {"replica": 1, "data": 1, "processes": 1, "cpu_threads": 1}
    assert len(runs["one"]["devices"]) == 1
    assert runs["data4"]["mesh"] == {"replica": 1, "data": 4, "processes": 1, "cpu_threads": cores()}
    assert len(runs["data4"]["devices"]) == 4
    assert runs["replica4"]["mesh"] == {"replica": 4, "data": 1, "processes": 1, "cpu_threads": cores()}
    for name in ("data4", "replica4"):
        _assert_same_per_replica(runs[name], runs["one"])
        assert len(runs[name]["per_member"]["test/accuracy"]) == 8
        assert [r["epoch"] for r in rows[name] if "member" not in r] == [1, 2]


def test_two_processes_match_one_process_with_four_devices(hydra_runs):
    runs, rows, logs, tmp = hydra_runs
    two = runs["two"]
    assert two["mesh"] == {"replica": 1, "data": 4, "processes": 2, "cpu_threads": cores()} and len(two["devices"]) == 4
    _assert_same_per_replica(two, runs["data4"])
    # only process 0 wrote the run dir: one row per epoch and member, one wandb run, one lock
    assert len(rows["two"]) == 2 * (1 + 8) and [r["epoch"] for r in rows["two"] if "member" not in r] == [1, 2]
    assert len(list((tmp / "two" / "wandb").glob("offline-run-*"))) == 1
    assert sorted(p.name for p in (tmp / "two" / "checkpoints").iterdir()) == ["2"]
    for i in range(2):                     # both processes trained and printed the same result
        assert "[jaxdl] test/accuracy = " in logs[f"proc{i}"]
    line = lambda i: next(x for x in logs[f"proc{i}"].splitlines() if x.startswith("[jaxdl] test/accuracy"))
    assert line(0) == line(1)


if __name__ == "__main__" and sys.argv[1:] == ["loop"]:
    print(json.dumps(_loop_worker()))
