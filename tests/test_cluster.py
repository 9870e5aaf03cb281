"""Runs on a cluster: one writer per run dir (jaxdl/run/lock.py), damaged checkpoints
(jaxdl/run/checkpoint.py), sweeps through Hydra's submitit launcher (conf/hydra/launcher/)
and one GPU per job for a joblib sweep (jaxdl/run/devices.py). Real processes throughout:
`python -m jaxdl.main` in subprocesses, SIGKILL and SIGUSR2 sent for real."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.helpers import ROOT, TINY_ECHO, run_inprocess

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}
SMALL = ["task.length=100", "task.streams=2", "task.test_length=100", "train.progress=false", "logger.mode=disabled"]


def _launch(args, timeout=600, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "jaxdl.main", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _epochs(run_dir: Path) -> list[int]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [int(r["epoch"]) for r in rows if "member" not in r]


def _wait_for(cond, what: str, timeout=300, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}:\n"
                                 f"{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _files(d: Path) -> dict:
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- one writer per run dir

def test_second_process_on_a_live_run_dir_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    args = SMALL + ["model.hidden=8", "train.checkpoint_every=20", f"hydra.run.dir={run}"]
    first = subprocess.Popen([sys.executable, "-m", "jaxdl.main", *args, "train.epochs=100000"], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (run / "metrics.jsonl").exists() and len(_epochs(run)) >= 25, "the first run's epochs",
                  proc=first)
        record = json.loads((run / "run.lock").read_text())
        assert record["pid"] == first.pid and record["host"] == socket.gethostname()

        second = _launch(args + ["train.epochs=100000"], timeout=300)
        assert second.returncode != 0
        assert f"pid {first.pid} on host {socket.gethostname()}" in second.stderr, second.stderr[-2000:]
        assert "in use by another jaxdl run" in second.stderr and "Traceback" not in second.stderr
        assert "[jaxdl] echo:" not in second.stdout and "resumed" not in second.stdout   # refused before compute
        assert first.poll() is None, "the first run must still be running"
        epochs = _epochs(run)
        assert epochs == list(range(1, len(epochs) + 1))      # one writer: no repeated or interleaved epochs
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()

    # SIGKILL: the kernel dropped the flock, the record still names the dead process
    assert json.loads((run / "run.lock").read_text())["pid"] == first.pid
    last = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    third = _launch(args + [f"train.epochs={last + 3}"], timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"taking over {run / 'run.lock'} left by pid {first.pid} on host {socket.gethostname()}" in third.stderr
    assert f"at epoch {last}" in third.stdout
    assert _epochs(run) == list(range(1, last + 4))
    assert (run / "run.lock").read_text() == ""          # released on close


def test_lock_records_are_taken_over_only_from_processes_that_are_gone(tmp_path, capsys):
    from jaxdl.run.lock import RunDirBusy, RunLock, _start_ticks

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    host = socket.gethostname()
    (tmp_path / "run.lock").write_text(json.dumps({"host": host, "pid": dead_pid, "started": "yesterday"}))
    lock = RunLock(tmp_path).acquire()
    assert f"taking over {tmp_path / 'run.lock'} left by pid {dead_pid} on host {host}" in capsys.readouterr().err
    assert lock.took_over["pid"] == dead_pid
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    with pytest.raises(RunDirBusy, match=rf"pid {os.getpid()} on host {host}"):
        RunLock(tmp_path).acquire()                      # flock is per open file: the same process is refused too
    lock.release()
    assert (tmp_path / "run.lock").read_text() == ""

    # a record naming a live process of this host (its lock file replaced under it) is not taken over...
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = _start_ticks(alive.pid)
        (tmp_path / "run.lock").write_text(json.dumps({"host": host, "pid": alive.pid, "pid_start": ticks}))
        with pytest.raises(RunDirBusy, match=rf"pid {alive.pid} on host {host}"):
            RunLock(tmp_path).acquire()
        # ...but the same pid with another start time is another process: that record is stale
        (tmp_path / "run.lock").write_text(json.dumps({"host": host, "pid": alive.pid, "pid_start": ticks + 1}))
        RunLock(tmp_path).acquire().release()
    finally:
        alive.kill()
        alive.wait()


def test_without_flock_the_record_decides_and_another_hosts_record_is_refused(tmp_path, monkeypatch, capsys):
    """A file system without flock (Lustre without -o flock: ENOSYS)."""
    import errno
    import fcntl

    from jaxdl.run.lock import RunDirBusy, RunLock

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    (tmp_path / "run.lock").write_text(json.dumps({"host": "node-17", "pid": 4242}))
    with pytest.raises(RunDirBusy, match=r"pid 4242 on host node-17.*no flock.*delete .*run.lock"):
        RunLock(tmp_path).acquire()
    (tmp_path / "run.lock").write_text("")
    lock = RunLock(tmp_path).acquire()
    assert "does not support flock" in capsys.readouterr().err and not lock.flock
    with pytest.raises(RunDirBusy, match=rf"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()                      # the record of a live process of this host
    lock.release()
    assert (tmp_path / "run.lock").read_text() == ""


# ---------------------------------------------------------------- damaged checkpoints

@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """A real run with checkpoints of epochs 2 and 3 (max_to_keep=2), and a reference run
    of 4 epochs never interrupted."""
    d = tmp_path_factory.mktemp("ckpt")
    base = TINY_ECHO + ["train.checkpoint_every=1", "logger.mode=disabled"]
    run_inprocess(d, base + ["train.epochs=3"], "r")
    run_inprocess(d, base + ["train.epochs=4"], "ref")
    assert sorted(p.name for p in (d / "r" / "checkpoints").iterdir()) == ["2", "3"]
    return d, base


def _damage_data(step_dir: Path) -> None:
    """Zero every data file of orbax's OCDBT store (the arrays), leaving the metadata."""
    for p in step_dir.rglob("*"):
        if p.is_file() and p.parent.name == "d":
            p.write_bytes(b"\0" * p.stat().st_size)


def test_damaged_newest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_previous(three_epochs, tmp_path):
    src, base = three_epochs
    run = tmp_path / "r"
    shutil.copytree(src / "r", run)
    _damage_data(run / "checkpoints" / "3")
    damaged = _files(run / "checkpoints" / "3")
    p = _launch(base + ["train.epochs=4", f"hydra.run.dir={run}"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"checkpoint {run / 'checkpoints' / '3'} cannot be read" in p.stderr
    assert "resuming from epoch 2" in p.stderr and "at epoch 2" in p.stdout
    assert "another model" not in p.stderr
    assert "Event loop is closed" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]
    moved = list((run / "checkpoints" / "damaged").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("3-")
    assert _files(moved[0]) == damaged                   # moved, intact, not deleted
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["3", "4", "damaged"]
    assert _epochs(run) == [1, 2, 3, 4]
    ref = [json.loads(x) for x in (src / "ref" / "metrics.jsonl").read_text().splitlines()]
    got = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert got == ref                                    # resumed from epoch 2 exactly


def test_when_no_checkpoint_can_be_read_the_run_says_so_and_leaves_them(three_epochs, tmp_path):
    src, base = three_epochs
    run = tmp_path / "r"
    shutil.copytree(src / "r", run)
    for step in ("2", "3"):                              # cut every file in half: metadata too
        for f in (run / "checkpoints" / step).rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    before = _files(run / "checkpoints")
    p = _launch(base + ["train.epochs=4", f"hydra.run.dir={run}"])
    assert p.returncode != 0
    assert f"no checkpoint in {run / 'checkpoints'} can be read" in p.stderr
    assert "checkpoints/3 cannot be read" in p.stderr and "checkpoints/2 cannot be read" in p.stderr
    assert "another model" not in p.stderr               # not the diagnosis of a shape mismatch
    assert "Event loop is closed" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert _files(run / "checkpoints") == before
    assert _epochs(run) == [1, 2, 3]


def test_checkpointer_tells_damage_from_another_model(tmp_path):
    from jaxdl.run.checkpoint import Checkpointer, CheckpointMismatch

    states = {e: {"w": np.full((3, 2), float(e), np.float32), "b": np.arange(2.0, dtype=np.float32) + e}
              for e in (1, 2, 3)}
    ck = Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
    for e, s in states.items():
        ck.save(e, s)
    meta = tmp_path / "checkpoints" / "3" / "default" / "_METADATA"
    meta.write_text(meta.read_text()[:40])               # unreadable metadata: damage, not another model
    got, epoch, moved = ck.restore_newest(states[1])
    assert epoch == 2 and [m[0] for m in moved] == [3] and moved[0][2].parent.name == "damaged"
    np.testing.assert_array_equal(got["w"], states[2]["w"])
    np.testing.assert_array_equal(got["b"], states[2]["b"])
    assert ck.latest_epoch() == 2
    before = _files(tmp_path / "checkpoints")
    with pytest.raises(CheckpointMismatch, match=r"checkpoints/2 holds 2 arrays"):
        ck.restore_newest({"w": np.zeros((4, 2), np.float32), "b": np.zeros(2, np.float32)})
    assert _files(tmp_path / "checkpoints") == before
    ck.close()


# ---------------------------------------------------------------- sweeps through submitit

def test_submitit_local_sweep_runs_each_job_in_a_process_of_its_own(tmp_path):
    sweep = tmp_path / "sweep"
    p = _launch(["-m", "hydra/launcher=submitit_local", "model.hidden=16,32", "train.epochs=1", *SMALL,
                 f"hydra.sweep.dir={sweep}"], timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = sorted(d for d in sweep.iterdir() if (d / "summary.json").exists())
    assert [d.name.split("_")[0] for d in jobs] == ["0", "1"]
    pids = set()
    for d, hidden in zip(jobs, (16, 32)):
        assert f"model.hidden={hidden}" in (d / ".hydra" / "overrides.yaml").read_text()
        job_id = str(OmegaConf.load(d / ".hydra" / "hydra.yaml").hydra.job.id)
        assert job_id.isdigit()                          # submitit's job id (the local controller's pid)
        log = next((sweep / ".submitit").glob(f"{job_id}/*_0_log.out")).read_text()
        assert "Job completed successfully" in log and f"run dir: {d}" in log
        pids.add(job_id)
        s = json.loads((d / "summary.json").read_text())
        assert s["epochs_run"] == 1 and s["num_params"] > 0
    assert len(pids) == 2 and str(os.getpid()) not in pids


def test_preempted_submitit_job_is_requeued_and_resumes_from_its_run_dir(tmp_path):
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "jaxdl.main", "-m", "hydra/launcher=local", "model.hidden=8", "train.epochs=1500",
         "train.checkpoint_every=1000", *SMALL, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        runs = lambda: [d for d in sweep.glob("0_*") if (d / "metrics.jsonl").exists()]
        _wait_for(lambda: runs() and len(_epochs(runs()[0])) >= 30, "the job's epochs", proc=launcher)
        run = runs()[0]
        job_pid = json.loads((run / "run.lock").read_text())["pid"]
        os.kill(job_pid, signal.SIGUSR2)                 # what SLURM sends before a time limit or preemption
        out, err = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    log = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_0_log.*"))
    assert "Requeued job" in log, log[-3000:]
    assert launcher.returncode == 0, err[-3000:]
    assert "resumed from" in log and (run / "summary.json").exists()
    assert _epochs(run) == list(range(1, 1501))          # no epoch lost or repeated


def test_slurm_preset_makes_the_sbatch_script_it_promises(tmp_path, monkeypatch):
    """The preset through the plugin's own launch(), up to the sbatch file (no SLURM here:
    a dummy `srun` on PATH lets submitit build its SLURM executor, and map_array renders
    the script instead of calling sbatch)."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                           f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.job.name=jaxdl"],
                      return_hydra_config=True)
    seen = {}

    def render(self, fn, *iterables):
        seen["executor"] = self._executor
        seen["sbatch"] = self._executor._make_submission_file_text("python -m submitit.core._submit X", "u")
        return []
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", render)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    assert launcher.launch([["model.hidden=16"]], 0) == []
    sbatch = seen["sbatch"]
    for line in ("#SBATCH --signal=USR2@300", "#SBATCH --gpus-per-node=1", "#SBATCH --time=240",
                 "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB",
                 "#SBATCH --ntasks-per-node=1", "export WANDB_MODE="):
        assert line in sbatch, (line, sbatch)
    assert seen["executor"].max_num_timeout == 20


# ---------------------------------------------------------------- one GPU per job (joblib)

CLAIM = ("import sys, time; from jaxdl.run.devices import claim_gpu, NoFreeGpu\n"
         "try:\n    g = claim_gpu(sys.argv[1].split(','), sys.argv[2])\nexcept NoFreeGpu as e:\n"
         "    print('none', e, flush=True); sys.exit(3)\n"
         "import os; print(g, os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(float(sys.argv[3]))\n")


def test_each_process_claims_a_gpu_of_its_own_until_it_exits(tmp_path):
    def start(hold):
        return subprocess.Popen([sys.executable, "-c", CLAIM, "3,5", str(tmp_path), str(hold)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    a = start(60)
    first = a.stdout.readline().split()
    b = start(60)
    second = b.stdout.readline().split()
    try:
        assert first == ["3", "3"] and second == ["5", "5"]   # the first free one, exported to CUDA
        c = start(0)
        out, _ = c.communicate(timeout=60)
        assert c.returncode == 3 and "all GPUs of ['3', '5'] are claimed" in out and "n_jobs" in out
        a.kill()
        a.wait()                                         # the kernel frees its claim
        d = start(0)
        out, _ = d.communicate(timeout=60)
        assert d.returncode == 0 and out.split() == ["3", "3"]
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


def test_joblib_gpus_preset_refuses_more_jobs_than_gpus_before_any_job(tmp_path):
    p = _launch(["-m", "hydra/launcher=joblib_gpus", "hydra.callbacks.one_gpu_per_job.gpus=[0]",
                 "hydra.launcher.n_jobs=2", "model.hidden=8,16", f"hydra.sweep.dir={tmp_path / 'sweep'}"], timeout=300)
    assert p.returncode == 2
    assert "n_jobs is 2, and there are 1 GPUs (0); set hydra.launcher.n_jobs=1" in p.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_joblib_gpus_sweep_gives_each_worker_one_gpu_for_all_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    p = _launch(["-m", "hydra/launcher=joblib_gpus", "hydra.callbacks.one_gpu_per_job.gpus=[5,7]",
                 f"hydra.callbacks.one_gpu_per_job.lock_dir={tmp_path}", "hydra.launcher.n_jobs=2",
                 "model.hidden=8,16,24", "train.epochs=1", *SMALL, f"hydra.sweep.dir={sweep}"], timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    claims = {}
    for log in sweep.glob("*/main.log"):
        line = next(x for x in log.read_text().splitlines() if "runs on GPU" in x)
        gpu, pid = line.split("runs on GPU ")[1].split()[0], line.rsplit("worker pid ", 1)[1].rstrip(")")
        claims.setdefault(pid, set()).add(gpu)
    assert sum(1 for _ in sweep.glob("*/summary.json")) == 3
    assert all(len(g) == 1 for g in claims.values())     # a worker keeps its GPU
    gpus = [next(iter(g)) for g in claims.values()]
    assert len(gpus) == len(set(gpus)) and set(gpus) <= {"5", "7"}   # no two workers share one
