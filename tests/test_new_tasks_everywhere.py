"""The copy task and sequential MNIST run everywhere the LSTM runs on echo: a population
member equals its solo run, random search with successive halving and replicas, resume
from a checkpoint (bit-identical), two forced CPU devices against one, and the report tool;
and each reports what it measures (no bits per character). Tiny sizes (copy: T = 9 steps;
smnist: 128 real images per split, skipped when the MNIST files are absent). The tasks'
layouts and bad inputs are in tests/test_seq_benchmarks.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxdl.report.__main__ import main as report_main
from tests.conftest import data_dir
from tests.helpers import QUIET, ROOT, TINY_COPY, metrics_rows, run_inprocess

TINY_SMNIST = ["task=smnist", "task.limit=128", "task.batch=32", "task.val_size=5000", "model.hidden=8",
               "train.epochs=2"] + QUIET
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
# both tasks with 2 replicas (and a checkpoint every epoch, for the resume below)
BASE = {"copy": TINY_COPY + ["train.replicas=2", "train.checkpoint_every=1"],
        "smnist": TINY_SMNIST + ["train.replicas=2", "train.checkpoint_every=1"]}
# the mesh each task runs on 2 forced CPU devices: copy splits its streams, smnist its members
MESH = {"copy": ["mesh.data=2"], "smnist": ["mesh.replica=2"]}
# CI runs the copy task everywhere and smnist in the halving run and its report (the CI time
# budget); smnist's resume and mesh runs are in the slow set
TASKS = ["copy", pytest.param("smnist", marks=pytest.mark.slow)]


def _need_mnist(task: str) -> None:
    if task == "smnist":
        d = data_dir() / "mnist"
        missing = [f for f in MNIST_FILES if not (d / f).exists() and not (d / f"{f}.gz").exists()]
        if missing:
            pytest.skip(f"MNIST not found in {d} (missing {missing}); set JAXDL_DATA to the folder holding mnist/")


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """task -> (summary, run dir) of the uninterrupted 2-epoch run with 2 replicas on one device."""
    made = {}

    def get(task):
        _need_mnist(task)
        if task not in made:
            made[task] = run_inprocess(tmp_path_factory.mktemp(task), BASE[task], "whole")
        return made[task]
    return get


@pytest.mark.parametrize("task", TASKS)
def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, whole, task):
    ref, ref_dir = whole(task)
    first, d = run_inprocess(tmp_path, BASE[task] + ["train.epochs=1"], "split")
    assert first["epochs_run"] == 1
    again, d = run_inprocess(tmp_path, BASE[task], "split")
    assert [r["epoch"] for r in metrics_rows(d) if "member" not in r] == [1, 2]
    assert again["final"] == ref["final"] and again["per_member"] == ref["per_member"]
    assert metrics_rows(d) == metrics_rows(ref_dir)


def test_a_copy_population_member_equals_its_solo_run(tmp_path, whole):
    """population.optim.lr=[0.01 (the default), 0.03] x 2 replicas: the lr=0.01 members are the
    whole run's replicas, epoch by epoch; the lr=0.03 members differ."""
    ref, ref_dir = whole("copy")
    s, d = run_inprocess(tmp_path, BASE["copy"] + ["population.optim.lr=[0.01,0.03]"], "pop")
    assert len(s["members"]) == 4 and s["selection"]["by"] == "val/accuracy"
    for m in s["members"]:
        mine = metrics_rows(d, m["member"])
        theirs = metrics_rows(ref_dir, m["replica"])
        assert len(mine) == len(theirs) == 2
        if m["hparams"]["optim.lr"] == 0.01:
            for a, b in zip(mine, theirs):
                for k in b:
                    if k != "member":
                        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
        else:
            assert mine[-1]["train/loss"] != theirs[-1]["train/loss"]
    each = s["copy"]["per_member"]["test/exact_match"]           # whole sequences, per member
    assert len(each) == 4 and s["final"]["test/exact_match"] == pytest.approx(np.mean(each))


@pytest.fixture(scope="module")
def halving(tmp_path_factory):
    """smnist: 2 learning rates drawn from a log-uniform, 2 replicas each, halving after epoch 1."""
    _need_mnist("smnist")
    d = tmp_path_factory.mktemp("halving")
    return run_inprocess(d, TINY_SMNIST + ["population.optim.lr={loguniform:[1e-3,1e-1]}", "population.samples=2",
                                           "train.replicas=2", "population.schedule=halving",
                                           "population.every=1"], "halving")


def test_smnist_random_search_with_halving_and_replicas(halving):
    s, d = halving
    assert len(s["members"]) == 4 and len({m["hparams"]["optim.lr"] for m in s["members"]}) == 2
    kept = s["member_stats_over"]["members"]
    stopped = [m["member"] for m in s["members"] if m.get("stopped_at") == 1]
    assert len(kept) == 2 and sorted(kept + stopped) == [0, 1, 2, 3]
    evals = {i: [r for r in metrics_rows(d, i) if "val/accuracy" in r] for i in range(4)}
    assert all(len(evals[i]) == (2 if i in kept else 1) for i in range(4))
    # the better half on val at the rung goes on
    assert min(evals[i][0]["val/accuracy"] for i in kept) >= max(evals[i][0]["val/accuracy"] for i in stopped)
    sel = s["selection"]
    assert sel["by"] == "val/accuracy" and sel["test"] == s["members"][sel["member"]]["final"]["test/accuracy"]


def test_the_report_reads_both_tasks(tmp_path, whole, halving):
    """python -m jaxdl.report on the halving smnist run (2 configs of 2 replicas) and on a copy run."""
    _, d = halving
    assert report_main([str(d), "--out", str(tmp_path / "smnist")]) == 0
    md = (tmp_path / "smnist" / "report.md").read_text()
    assert md.startswith("# Report: smnist") and "selection reads `val/accuracy`" in md
    assert "Swept: `optim.lr`" in md and "(selected)" in md
    _, c = whole("copy")
    assert report_main([str(c), "--out", str(tmp_path / "copy")]) == 0
    md = (tmp_path / "copy" / "report.md").read_text()
    assert md.startswith("# Report: copy") and "| 2 |" in md             # one config, its 2 replicas


@pytest.mark.parametrize("task", TASKS)
def test_two_devices_equal_one(tmp_path, whole, task):
    """The task on 2 forced CPU devices (a subprocess: copy with mesh.data=2, smnist with
    mesh.replica=2) against the one-device run, per member to 1e-5."""
    one = whole(task)[0]
    env = {**os.environ, "WANDB_MODE": "offline", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", *BASE[task], *MESH[task], f"hydra.run.dir={tmp_path}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads((tmp_path / "summary.json").read_text())
    want = {o.split("=")[0].removeprefix("mesh."): int(o.split("=")[1]) for o in MESH[task]}
    assert {k: got["mesh"][k] for k in want} == want
    for k, v in one["per_member"].items():
        np.testing.assert_allclose(got["per_member"][k], v, rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("task", ["copy", "smnist"])
def test_each_task_reports_what_it_measures(request, whole, task):
    """No text metric on a classification or bit-copying task: loss and accuracy (copy: per
    bit) from the objective, copy's whole-sequence exact match after training; bits per
    character only where a task declares it (SeqTask.metrics: textgen, tests/test_tasks.py).
    smnist: read from the halving run above."""
    s, d = whole("copy") if task == "copy" else request.getfixturevalue("halving")
    want = {f"{split}/{m}" for split in ("train", "val", "test") for m in ("loss", "accuracy")}
    assert set(s["final"]) == want | ({"val/exact_match", "test/exact_match"} if task == "copy" else set())
    assert all("bpc" not in k for r in metrics_rows(d) for k in r)


def test_a_derived_metric_is_added_only_when_declared():
    import jax.numpy as jnp
    from jaxdl.objectives import get_objective
    logits, labels = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]]), jnp.array([0, 2])
    plain = get_objective("xent")(logits, labels)
    assert set(plain) == {"loss", "accuracy"}
    bits = get_objective("xent", ("bpc",))(logits, labels)
    np.testing.assert_allclose(bits["bpc"], plain["loss"] / np.log(2.0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"unknown derived metric\(s\) \['bits'\]"):
        get_objective("xent", ("bits",))


def test_the_population_and_mesh_refusals_name_every_task_that_takes_one():
    """The lists in the messages come from the registry (copy and smnist included)."""
    from jaxdl.configure import ConfigError, parse
    from jaxdl.tasks.registry import tasks
    from tests.helpers import compose_cfg
    with pytest.raises(ConfigError, match="population.*multirun") as err:
        parse(compose_cfg(["task=forecast", "population.optim.lr=[0.001,0.01]"]))
    takes = [t.name for t in tasks().values() if t.kind in ("stream", "classify")]
    assert {"copy", "smnist", "echo", "mnist"} <= set(takes)
    assert all(name in str(err.value) for name in takes) and "forecast" not in str(err.value)
    with pytest.raises(ConfigError, match="mesh.data=2: this task's trainer does not split") as err:
        parse(compose_cfg(["task=digits", "model=mlp", "mesh.data=2"]))
    stream = [t.name for t in tasks().values() if t.kind == "stream"]
    assert {"copy", "smnist", "echo"} <= set(stream) and all(name in str(err.value) for name in stream)
    assert "digits" not in str(err.value)
