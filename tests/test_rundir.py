"""The run directory never lies and never hangs (docs/run-directory.md): every epoch once in
metrics.jsonl, Ctrl-C as a stop request, a changed config refused on resume (or recorded with
train.resume=amend) leaving the run dir as it was, stop requests honoured within seconds in
the middle of an epoch and resumed bit-identical, sizes refused before compute, one line for
a full or read-only disk, and a report that marks runs in progress. Real processes and real
signals where signals are the point."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, TINY_ECHO, assert_same_checkpoint, preempt_mid_epoch, run_inprocess

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}
QUIET = ["logger.mode=disabled", "train.progress=false"]
SMALL = TINY_ECHO + QUIET


def _popen(args):
    return subprocess.Popen([sys.executable, "-m", "jaxdl.main", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _launch(args, timeout=600):
    return subprocess.run([sys.executable, "-m", "jaxdl.main", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _rows(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _epochs(d: Path) -> list[int]:
    return [int(r["epoch"]) for r in _rows(d) if "member" not in r]


def _wait_rows(d: Path, n: int, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        f = d / "metrics.jsonl"
        if f.exists() and len(f.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ended (rc {proc.returncode}) before {n} rows:\n{err[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {n} rows in {timeout} s")


def _files(d: Path) -> dict:
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _steps(d: Path) -> list[int]:
    return sorted(int(p.name) for p in (d / "checkpoints").iterdir() if p.name.isdigit())


# ---------------------------------------------------------------- every epoch once

def test_a_kill_before_the_first_checkpoint_leaves_no_repeated_rows(tmp_path):
    """SIGKILL in epoch 3 of a run that checkpoints every 1000 epochs: the relaunch starts over
    and metrics.jsonl holds epochs 1..4 once (it used to keep the killed run's rows too)."""
    run = tmp_path / "run"
    args = SMALL + ["train.checkpoint_every=1000", f"hydra.run.dir={run}"]
    p = _popen(args + ["train.epochs=1000"])
    try:
        _wait_rows(run, 3, p)
    finally:
        p.kill()
        p.communicate()
    assert not _steps(run) and len(_epochs(run)) >= 3
    done = _launch(args + ["train.epochs=4"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed" not in done.stdout
    assert _epochs(run) == [1, 2, 3, 4]


def test_a_damaged_row_at_or_below_the_checkpoint_is_rebuilt_or_named_lost(tmp_path, capsys):
    base = SMALL + ["train.checkpoint_every=1"]
    run_inprocess(tmp_path, base + ["train.epochs=4"], "ref")
    _, run = run_inprocess(tmp_path, base + ["train.epochs=3"], "r")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    lines[2] = lines[2][: len(lines[2]) // 2]             # epoch 3's row torn after its checkpoint landed
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    run_inprocess(tmp_path, base + ["train.epochs=4"], "r")
    err = capsys.readouterr().err
    assert "rebuilt the rows of epoch(s) 3" in err and "line 3" in err
    assert _rows(run) == _rows(tmp_path / "ref")          # the row is back, exactly as it was

    # a damaged row whose copy is gone too: the run says which epoch's row is lost
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = "{not json"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    prog = json.loads((run / "progress.json").read_text())
    prog["2"]["rows"] = []
    (run / "progress.json").write_text(json.dumps(prog))
    run_inprocess(tmp_path, base + ["train.epochs=5"], "r")
    err = capsys.readouterr().err
    assert "the rows of epoch(s) 2 are lost" in err
    assert _epochs(run) == [1, 3, 4, 5]


# ---------------------------------------------------------------- Ctrl-C

def test_first_ctrl_c_stops_with_a_checkpoint_and_exit_130_a_second_aborts_at_once(tmp_path):
    """Epochs of 10,000 updates in chunks of up to 30 s: the first SIGINT stops at the end of
    the chunk in flight with a checkpoint (exit 130, the usual line, no traceback); a second
    one 50 ms after the first ends the process at once, mid-chunk."""
    run = tmp_path / "run"
    args = QUIET + ["task.length=100000", "task.streams=2", "task.test_length=200", "task.val_length=0",
                    "model.hidden=8", "train.checkpoint_every=1000", "train.chunk_s=30", f"hydra.run.dir={run}"]
    p = _popen(args + ["train.epochs=100000"])
    _wait_rows(run, 2, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-3000:]
    assert "SIGINT received: stopped" in err and "exit code 130" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    mid = run / "checkpoints" / "mid"
    assert _steps(run) == [len(_epochs(run))] or any(x.name.isdigit() for x in mid.iterdir())

    p = _popen(args + ["train.epochs=100000"])
    _wait_rows(run, len(_epochs(run)) + 1, p)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    time.sleep(0.05)
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGINT, err[-3000:]
    assert time.time() - t0 < 5 and "SIGINT received: stopped" not in err
    # a save cut short leaves <step>.orbax-checkpoint-tmp-*: the next launch removes it before it looks
    (run / "checkpoints" / "99999.orbax-checkpoint-tmp-1").mkdir()
    r = _launch(args + [f"train.epochs={len(_epochs(run)) + 1}"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "99999.orbax-checkpoint-tmp-1, a checkpoint whose save was cut short" in r.stderr
    assert not [x for x in (run / "checkpoints").rglob("*") if "tmp" in x.name]
    epochs = _epochs(run)
    assert epochs == list(range(1, len(epochs) + 1))


# ---------------------------------------------------------------- resume checks the config

def test_a_changed_config_is_refused_leaving_every_file_and_amend_records_the_launches(tmp_path):
    from jaxdl.run.lock import RunLock
    run = tmp_path / "run"
    args = SMALL + ["train.checkpoint_every=1", f"hydra.run.dir={run}"]
    first = _launch(args + ["train.epochs=2"])
    assert first.returncode == 0, first.stderr[-3000:]
    before = _files(run)
    assert "train.epochs=2" in (run / ".hydra" / "overrides.yaml").read_text()

    r = _launch(args + ["train.epochs=3", "optim.lr=0.003", "task.lag=4"])
    assert r.returncode == 2, r.stderr[-3000:]
    assert "optim.lr: 0.01 there, 0.003 now" in r.stderr and "task.lag: 8 there, 4 now" in r.stderr
    assert "train.resume=amend" in r.stderr and "hydra.run.dir=" in r.stderr
    assert "resumed" not in r.stdout and "Traceback" not in r.stderr
    assert _files(run) == before                           # .hydra/ included

    with RunLock(run):                                     # a second writer, refused by the lock
        r = _launch(args + ["train.epochs=3"])
    assert r.returncode != 0 and "in use by another jaxdl run" in r.stderr
    assert _files(run) == before

    r = _launch(args + ["train.epochs=3", "logger.mode=offline"])   # extending and logging pass
    assert r.returncode == 0 and "at epoch 2" in r.stdout, r.stderr[-3000:]
    r = _launch(args + ["train.epochs=4", "optim.lr=0.003", "train.resume=amend"])
    assert r.returncode == 0 and "at epoch 3" in r.stdout, r.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    segs = [(x["from_epoch"], x["to_epoch"], x["changed"]) for x in s["launches"]]
    assert segs == [(0, 2, {}), (2, 3, {}), (3, 4, {"optim.lr": [0.01, 0.003]})]
    assert "optim.lr=0.003" in (run / ".hydra" / "overrides.yaml").read_text()
    assert _epochs(run) == [1, 2, 3, 4]
    from jaxdl.report import make_report
    md, _ = make_report([run], tmp_path / "rep")
    assert "epochs 4-4 with optim.lr=0.003" in md.read_text()


def test_a_checkpoint_of_another_estimator_state_layout_is_refused_leaving_every_file(tmp_path):
    """UORO's theta~ (and SnAp-1's M) changed layout at the same shapes: a run dir records the
    layout per launch and resumes with the same one; a checkpoint recorded with an older
    layout, or by code that recorded none (layout 1), is refused in one line before any
    compute, touching nothing."""
    from jaxdl.estimators import STATE_LAYOUTS
    from jaxdl.run.launches import LaunchRefused
    run = tmp_path / "r"
    base = SMALL + ["model.hidden=4", "estimator=uoro", "estimator.every=5", "train.checkpoint_every=1"]
    run_inprocess(tmp_path, base + ["train.epochs=1"], "r")
    again, _ = run_inprocess(tmp_path, base + ["train.epochs=2"], "r")       # the same layout resumes
    assert [x["from_epoch"] for x in again["launches"]] == [0, 1]
    written = (run / "launches.json").read_text()
    now = STATE_LAYOUTS["uoro"]
    assert now >= 2 and [x["state_layout"] for x in json.loads(written)["launches"]] == [
        {"estimator": "uoro", "version": now}] * 2
    for old in (now - 1, None):                        # None: code that recorded no layout wrote version 1
        data = json.loads(written)
        for x in data["launches"]:
            if old is None:
                del x["state_layout"]
            else:
                x["state_layout"]["version"] = old
        (run / "launches.json").write_text(json.dumps(data))
        before = {k: v for k, v in _files(run).items() if str(k) != "run.lock"}
        with pytest.raises(LaunchRefused) as err:
            run_inprocess(tmp_path, base + ["train.epochs=3"], "r")
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"{run}: its checkpoints hold estimator=uoro's state in layout "
                                                    f"{old or 1}, but this code writes and reads estimator=uoro's "
                                                    f"state in layout {now}"), msg
        assert "start a new run dir (hydra.run.dir=<a new dir>), or resume with the code that wrote it" in msg
        assert {k: v for k, v in _files(run).items() if str(k) != "run.lock"} == before


def test_the_state_layout_check_reads_only_run_dirs_with_a_checkpoint(tmp_path):
    """check_state_layout on its own: TBPTT and unchanged layouts pass, another estimator's
    state is refused (train.resume=amend does not lift it), a run dir without a checkpoint passes."""
    from jaxdl.run.launches import LaunchRefused, check_state_layout
    uoro2, snap2 = {"estimator": "uoro", "version": 2}, {"estimator": "snap1", "version": 2}
    tbptt = [{"config": {"estimator": {"name": "tbptt"}}}]
    check_state_layout(tmp_path, [{"state_layout": uoro2}], snap2)          # no checkpoint: nothing to misread
    (tmp_path / "checkpoints" / "mid" / "12").mkdir(parents=True)
    check_state_layout(tmp_path, tbptt, None)                               # unrecorded TBPTT, TBPTT now
    check_state_layout(tmp_path, [{"state_layout": uoro2}], uoro2)
    check_state_layout(tmp_path, [], None)
    for records, now in (([{"state_layout": uoro2}], snap2), (tbptt, uoro2), ([{"state_layout": None}], uoro2),
                         ([], uoro2)):
        with pytest.raises(LaunchRefused, match=f"^{tmp_path}: its checkpoints hold "):
            check_state_layout(tmp_path, records, now)


# ---------------------------------------------------------------- stop within seconds

def test_sigterm_in_a_long_epoch_stops_within_seconds_with_a_mid_epoch_checkpoint(tmp_path):
    """An epoch of 200,000 updates (about a minute or more here): SIGTERM once it is under
    way; the run stops within 10 s, checkpointed inside the epoch."""
    run = tmp_path / "run"
    p = _popen(QUIET + ["task.length=2000000", "task.streams=1", "task.test_length=10", "task.val_length=0",
                        "model.hidden=4", "tbptt.k1=10", "tbptt.k2=10", "train.checkpoint_every_s=2",
                        "train.chunk_s=1", f"hydra.run.dir={run}"])
    mid = run / "checkpoints" / "mid"
    deadline = time.time() + 300
    while not (mid.is_dir() and any(x.name.isdigit() for x in mid.iterdir())):
        assert p.poll() is None and time.time() < deadline, p.communicate()[1][-3000:]
        time.sleep(0.1)
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    took = time.time() - t0
    assert p.returncode == 75, err[-3000:]
    assert took < 10, took
    assert "stopped in epoch 1 after update" in err and "of 200000" in err
    step = max(int(x.name) for x in mid.iterdir() if x.name.isdigit())
    assert 0 < step < 200000 and not (run / "metrics.jsonl").exists()


def test_a_stop_in_mid_epoch_resumes_bit_identical(tmp_path):
    """One-update chunks and a checkpoint every 0.2 s; a real SIGTERM (sent to this process
    once a mid-epoch checkpoint of epoch 2 exists) stops the run inside epoch 2; the
    relaunch resumes at that update and ends exactly where an uninterrupted run ends."""
    base = QUIET + ["task.length=1500", "task.streams=2", "task.test_length=100", "task.val_length=0",
                    "model.hidden=8", "tbptt.k1=5", "tbptt.k2=10", "train.epochs=3", "train.replicas=2",
                    "train.chunk_s=1e-9", "train.checkpoint_every_s=0.2", "train.checkpoint_every=100"]
    run_inprocess(tmp_path, base, "ref")
    preempt_mid_epoch(tmp_path, base, "r", epoch=2, updates=300)
    assert _epochs(tmp_path / "r") == [1]
    run_inprocess(tmp_path, base, "r")
    assert_same_checkpoint(tmp_path, "ref", "r", 3)
    assert _rows(tmp_path / "ref") == _rows(tmp_path / "r")


# ---------------------------------------------------------------- sizes before compute

def test_task_data_that_cannot_fit_is_refused_before_it_is_built(tmp_path):
    """task.streams=10**7 would build terabytes of one-hot streams: refused by the task
    config's own estimate before any array exists, naming the keys; no run dir files."""
    from jaxdl.run.budget import DoesNotFit
    t0 = time.perf_counter()
    with pytest.raises(DoesNotFit, match=r"the task's arrays .*lower task\.streams"):
        run_inprocess(tmp_path, ["task.streams=10000000", "train.progress=false", "logger.mode=disabled"])
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "t" / "metrics.jsonl").exists()


def test_sizes_that_cannot_fit_are_refused_before_compute(tmp_path):
    r = _launch(QUIET + ["model.hidden=200000", f"hydra.run.dir={tmp_path / 'big'}"], timeout=300)
    assert r.returncode == 1, r.stderr[-3000:]
    line = [x for x in r.stderr.splitlines() if x.startswith("[jaxdl] error:")]
    assert len(line) == 1 and "model.hidden" in line[0] and "GiB" in line[0] and "parameters" in line[0]
    assert "Traceback" not in r.stderr
    with pytest.raises(ValueError, match=r"tbptt.k2=100000 is longer than the training stream \(200 time steps\)"):
        run_inprocess(tmp_path, SMALL + ["tbptt.k2=100000"], "k2")


def test_a_programs_temporaries_are_measured_and_refused_over_the_limit():
    """budget.check_program reads the compiled program's own account of its temporaries: a
    TBPTT chunk's grow with the window, and one over the limit is refused naming the keys."""
    import jax
    from jaxdl.configure import parse
    from jaxdl.run import budget
    from jaxdl.runner import make_trainer
    from jaxdl.tasks import TASKS, build
    from jaxdl.train.loop import init_members
    from tests.helpers import compose_cfg

    def temps(k):
        ov = SMALL + [f"tbptt.k1={k}", f"tbptt.k2={k}"]
        c = parse(compose_cfg(ov), ov)
        task = build(TASKS[c.task.name], c.task, c.seed, c.data_dir, c.model, c.optim, c.train)
        tr, _ = make_trainer(task, c)
        st = jax.eval_shape(lambda: init_members(tr, 0, 1))
        lowered = jax.jit(jax.vmap(tr.train_chunk, in_axes=(0, None, None, None))).lower(
            st, tr.epoch_inputs(0), np.int32(0), np.int32(1))
        return lowered, lowered.compile().memory_analysis().temp_size_in_bytes
    (_, t10), (big, t200) = temps(10), temps(200)
    assert t200 > 5 * t10 > 0
    budget.check_program(big, limit=int(t200 * 2))
    with pytest.raises(budget.DoesNotFit, match=r"temporaries \(activations of a window\).*tbptt.k2"):
        budget.check_program(big, limit=int(t200 / 2))


# ---------------------------------------------------------------- one clear line

def _in_tmpfs(script: str, size: str = "64m", timeout=600):
    """Run `script` (sh) in a private mount namespace with a tmpfs of `size` at $D."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this machine does not allow private mount namespaces")
    d = f"/tmp/jaxdl-tmpfs-{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    full = f"mount -t tmpfs -o size={size} tmpfs {d} || exit 9\nD={d}; export D\n{script}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", full], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_a_full_disk_and_a_read_only_run_dir_end_in_one_line_and_lose_nothing():
    py, args = sys.executable, " ".join(SMALL + ["train.checkpoint_every=1"])
    r = _in_tmpfs(f"""
{py} -m jaxdl.main {args} train.epochs=100000 hydra.run.dir=$D/run > /tmp/jaxdl-out-$$ 2> /tmp/jaxdl-err-$$ &
pid=$!
rows() {{ [ -s $D/run/metrics.jsonl ] && wc -l < $D/run/metrics.jsonl || echo 0; }}
while kill -0 $pid 2>/dev/null && [ "$(rows)" -lt 3 ]; do sleep 0.1; done
dd if=/dev/zero of=$D/fill bs=64k 2>/dev/null
wait $pid; echo "rc=$?"
echo "--- stderr"; cat /tmp/jaxdl-err-$$; rm /tmp/jaxdl-err-$$
echo "--- stdout tracebacks: $(grep -c Traceback /tmp/jaxdl-out-$$)"; rm /tmp/jaxdl-out-$$
last=$(ls $D/run/checkpoints | grep -E '^[0-9]+$' | sort -n | tail -1)
rm $D/fill
{py} -m jaxdl.main {args} train.epochs=$((last + 1)) hydra.run.dir=$D/run > $D/out2 2>&1; echo "resume rc=$? last=$last"
grep -c resumed $D/out2
mount -o remount,ro $D
{py} -m jaxdl.main {args} train.epochs=$((last + 2)) hydra.run.dir=$D/run 2>&1; echo "ro rc=$?"
""")
    out = r.stdout
    assert "rc=1" in out, out + r.stderr
    err = out.split("--- stderr")[1].split("--- stdout")[0]
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("[jaxdl] notice")]
    assert len(lines) == 1, err
    assert lines[0].startswith("[jaxdl] error: no space left on the disk of") and "hydra.run.dir" in lines[0]
    assert "--- stdout tracebacks: 0" in out
    # the run's log, or a temp file when that disk is full
    log = Path(lines[0].rsplit("(traceback: ", 1)[1].rstrip(")"))
    assert "No space left on device" in log.read_text() and "Traceback" in log.read_text()
    assert "resume rc=0" in out and "\n1\n" in out            # a relaunch with space resumes
    ro = out.split("resume rc=0")[1]
    assert "[jaxdl] error: hydra.run.dir=" in ro and "pick a writable directory" in ro and "ro rc=1" in ro
    assert "Traceback" not in ro


# ---------------------------------------------------------------- the report

def test_report_marks_runs_in_progress_and_names_an_unreadable_job(tmp_path):
    from jaxdl.report import make_report
    from tests.test_report import write_run
    sweep = tmp_path / "sweep"
    for i, lr in enumerate((0.1, 0.2)):
        write_run(sweep / f"{i}_optim.lr={lr}", [f"optim.lr={lr}"], 0, [{"replica": 0, "curves": {
            "train/loss": [1.0], "val/accuracy": [0.5 + lr], "test/accuracy": [0.4 + lr]}}])
    bad = sweep / "2_optim.lr=0.3"
    write_run(bad, ["optim.lr=0.3"], 0, [{"replica": 0, "curves": {
        "train/loss": [1.0], "val/accuracy": [0.9], "test/accuracy": [0.9]}}])
    (bad / "summary.json").write_text('{"final": {"test/acc')  # a job cut off while writing
    busy = sweep / "1_optim.lr=0.2"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from jaxdl.run.lock import RunLock; "
                               f"RunLock({str(busy)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        md, rep = make_report([sweep], tmp_path / "rep")
    finally:
        holder.kill()
        holder.wait()
    text = md.read_text()
    assert [rep.label(c) for c in rep.configs] == ["optim.lr=0.1", "optim.lr=0.2"]
    assert "Left out, cannot be read" in text and "2_optim.lr=0.3" in text and "not valid JSON" in text
    assert "In progress" in text and f"pid {holder.pid}" in text and "1_optim.lr=0.2" in text.split("In progress")[1]
    _, rep = make_report([sweep], tmp_path / "rep2")          # released: no longer in progress
    assert not rep.in_progress
