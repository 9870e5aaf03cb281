"""The one training loop: every kind of task trains through it, so replicas, live
metrics rows, resume and preemption behave the same for all of them."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import ROOT, TINY_ECHO, run_inprocess

QUIET = ["logger.mode=disabled", "train.progress=false"]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}

# one small task of each trainer kind
KINDS = {
    "tbptt": TINY_ECHO,
    "workflow": ["task=seqclass", "task.variant=varlen", "task.n=300", "model.hidden=8", "train.batch_size=30"],
    "classify": ["task=digits", "model=mlp", "model.hidden=[16]", "optim=sgd", "optim.lr=0.5", "train.batch_size=16"],
    "perceptron": ["task=or", "model=perceptron"],
}


def _rows(d):
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_trains_replicas_with_member_rows(tmp_path, kind):
    epochs = ["model.iterations=3"] if kind == "perceptron" else ["train.epochs=3"]
    s, d = run_inprocess(tmp_path, KINDS[kind] + epochs + ["train.replicas=2"] + QUIET)
    head = s["headline"]
    assert len(s["per_member"][head]) == 2
    st = s["member_stats"][head]
    assert st["mean"] == pytest.approx(np.mean(s["per_member"][head]))
    rows = _rows(d)
    means = [r for r in rows if "member" not in r]
    members = [r for r in rows if "member" in r]
    assert [r["epoch"] for r in means] == [1, 2, 3]
    assert sorted((r["epoch"], r["member"]) for r in members) == [(e, m) for e in (1, 2, 3) for m in (0, 1)]
    for e in (1, 2, 3):      # the mean row is the mean of its member rows
        pair = [r for r in members if r["epoch"] == e]
        for k in pair[0]:
            if "/" in k:
                mean = next(r for r in means if r["epoch"] == e)[k]
                assert mean == pytest.approx((pair[0][k] + pair[1][k]) / 2, rel=1e-6), k
    if kind != "perceptron":      # the perceptron starts from zero weights: replicas are alike by design
        loss = s["per_member"]["train/loss"]
        assert loss[0] != loss[1]
    assert s["final"][head] == means[-1][head]


@pytest.mark.parametrize("kind", ["workflow", "classify", "perceptron"])
def test_every_kind_resumes_bit_identical(tmp_path, kind):
    """A run extended from 2 to 4 epochs in its run dir ends where a straight 4-epoch run
    ends: rows and checkpointed arrays alike (TBPTT: tests/test_harness.py, after SIGKILL)."""
    import orbax.checkpoint as ocp
    n = "model.iterations" if kind == "perceptron" else "train.epochs"
    base = KINDS[kind] + ["train.checkpoint_every=1", "train.replicas=2"] + QUIET
    run_inprocess(tmp_path, base + [f"{n}=4"], "ref")
    run_inprocess(tmp_path, base + [f"{n}=2"], "run")
    run_inprocess(tmp_path, base + [f"{n}=4"], "run")

    def leaves(d):
        with ocp.CheckpointManager(tmp_path / d / "checkpoints") as m:
            return m.restore(4, args=ocp.args.StandardRestore())
    a, b = leaves("ref"), leaves("run")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert _rows(tmp_path / "ref") == _rows(tmp_path / "run")


def test_forecast_reports_both_replicas(tmp_path):
    s, d = run_inprocess(tmp_path, ["task=forecast", "train.epochs=20", "train.replicas=2",
                                    "train.checkpoint_every=100"] + QUIET)
    rmse = s["per_member"]["test/rmse"]
    assert len(rmse) == 2 and rmse[0] != rmse[1] and all(np.isfinite(rmse))
    assert s["final"]["test/rmse"] == pytest.approx(np.mean(rmse), rel=1e-6)
    assert "val/rmse" in s["final"]            # the validation months, held out from training
    assert s["final"]["test/rmse_persistence"] > 0 and s["final"]["test/rmse_mlp"] > 0


def _launch(args):
    return subprocess.Popen([sys.executable, "-m", "jaxdl.main", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_workflow_metrics_grow_while_it_trains(tmp_path):
    """metrics.jsonl gets each epoch's row as the epoch ends, not after the fit."""
    run = tmp_path / "live"
    p = _launch(KINDS["workflow"] + ["train.epochs=400", "train.checkpoint_every=1000", f"hydra.run.dir={run}"] + QUIET)
    seen = set()
    deadline = time.time() + 300
    while p.poll() is None and time.time() < deadline and len(seen) < 3:
        f = run / "metrics.jsonl"
        if f.exists():
            n = len(f.read_text().splitlines())
            if n:
                seen.add(n)
        time.sleep(0.05)
    alive = p.poll() is None
    p.kill()
    p.communicate()
    assert alive, "the run ended before its rows could be watched growing"
    assert len(seen) >= 3, seen


def test_sigterm_stops_at_the_epoch_boundary_and_a_relaunch_resumes_bit_identical(tmp_path):
    """Preemption: SIGTERM mid-run finishes the epoch in flight, checkpoints it (even off
    the checkpoint_every grid), exits with code 75, and the relaunch ends where an
    uninterrupted run ends."""
    args = ["task.length=400", "task.streams=8", "task.test_length=200", "model.hidden=32", "train.epochs=8",
            "train.checkpoint_every=100", "train.chunk_s=null"] + QUIET   # one chunk per epoch: the stop at its end

    ref = tmp_path / "ref"
    p = _launch(args + [f"hydra.run.dir={ref}"])
    assert p.wait(600) == 0
    run = tmp_path / "pre"
    p = _launch(args + [f"hydra.run.dir={run}"])
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        f = run / "metrics.jsonl"
        if f.exists() and len(f.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 75, err[-2000:]
    assert "SIGTERM" in err and "resume" in err
    done = len(_rows(run))
    assert 2 <= done < 8
    assert sorted(int(x.name) for x in (run / "checkpoints").iterdir() if x.name.isdigit())[-1] == done
    p = _launch(args + [f"hydra.run.dir={run}"])
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    assert "resumed from" in out
    assert _rows(ref) == _rows(run)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ref, run))
    assert sa["final"] == sb["final"]


def test_model_dtype_and_remat_reach_the_tbptt_trainer(tmp_path):
    """model.remat=sqrt recomputes the same gradients (the run's rows agree with the stored
    activations' run); model.dtype=bfloat16 trains with bf16 matmul inputs, so its rows differ
    slightly from float32's but it learns as well."""
    base = TINY_ECHO + ["train.epochs=3"] + QUIET
    ref, rd = run_inprocess(tmp_path, base, "f32")
    _, md = run_inprocess(tmp_path, base + ["model.remat=sqrt"], "remat")
    for a, b in zip(_rows(rd), _rows(md)):
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5), k
    bf, bd = run_inprocess(tmp_path, base + ["model.dtype=bfloat16"], "bf16")
    assert _rows(bd)[-1]["train/loss"] != _rows(rd)[-1]["train/loss"]
    assert bf["final"]["test/accuracy"] == pytest.approx(ref["final"]["test/accuracy"], abs=0.05)
