"""The research harness: config validation, the run directory contract, wandb
offline, replicas, Hydra multirun and resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxdl.configure import ConfigError, parse
from tests.helpers import ROOT, TINY_ECHO, compose_cfg, run_inprocess

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}


def test_documented_overrides_mean_what_they_say():
    spec = parse(compose_cfg(["task=echo", "task.lag=10", "model=lstm", "model.hidden=64",
                              "tbptt.k1=10", "tbptt.k2=20", "seed=3", "train.epochs=5",
                              "logger.mode=disabled"]))
    assert spec.task.name == "echo" and spec.task.lag == 10
    assert spec.model.name == "lstm" and spec.model.hidden == 64
    assert (spec.tbptt.k1, spec.tbptt.k2) == (10, 20)
    assert spec.seed == 3 and spec.train.epochs == 5 and spec.logger.mode == "disabled"
    for mode in ("offline", "online"):
        assert parse(compose_cfg([f"logger.mode={mode}"])).logger.mode == mode


@pytest.mark.parametrize("override,key", [
    ("tbptt.k1=0", "tbptt.k1"), ("tbptt.k2=-3", "tbptt.k2"), ("model.hidden=0", "model.hidden"),
    ("tbptt.reset=sometimes", "tbptt.reset"), ("train.epochs=0", "train.epochs"),
    ("optim.lr=-1", "optim.lr"), ("logger.mode=loud", "logger.mode"), ("+task.lagg=3", "task.lagg"),
    ("task.lag=0", "task.lag"), ("+model.hiden=3", "model.hiden"), ("+tbptt_k1=3", "tbptt_k1"),
])
def test_bad_values_are_rejected_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse(compose_cfg([override]))


def test_bad_config_fails_before_any_compute(tmp_path):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", "tbptt.k1=0", f"hydra.run.dir={tmp_path}/r"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "tbptt.k1" in p.stderr and "must be >= 1" in p.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
    # an unknown task is refused by Hydra itself, naming the group and the options
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", "task=nosuch", f"hydra.run.dir={tmp_path}/u"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "nosuch" in p.stderr and "echo" in p.stderr
    assert time.perf_counter() - t0 < 60


def test_run_directory_contract(tmp_path):
    summary, d = run_inprocess(tmp_path, TINY_ECHO + ["train.epochs=3", "train.checkpoint_every=2",
                                                      "logger.mode=offline"])
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all("step" in r and "train/loss" in r and "test/accuracy" in r for r in rows)
    assert rows[-1]["step"] == 3 * rows[0]["step"]
    s = json.loads((d / "summary.json").read_text())
    for k in ("final", "best", "wall_time_s", "updates_per_s", "num_params", "jax_version", "devices", "seed"):
        assert k in s, k
    assert s["final"]["test/accuracy"] == rows[-1]["test/accuracy"]
    assert s["best"]["train/loss"] == min(r["train/loss"] for r in rows)
    assert s["num_params"] == 4 * 16 * (4 + 16 + 1) + 16 * 4 + 4
    assert s["higher_is_better"] is True and s["headline"] == "test/accuracy"
    assert sorted(p.name for p in (d / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3"]
    offline = list((d / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


def test_replicas_are_vmapped_seeds(tmp_path):
    base = TINY_ECHO + ["train.epochs=2", "logger.mode=disabled"]
    s3, _ = run_inprocess(tmp_path, base + ["train.replicas=3"], "r3")
    s1, _ = run_inprocess(tmp_path, base + ["train.replicas=1"], "r1")
    acc = s3["per_member"]["train/loss"]
    assert len(acc) == 3 and len(set(acc)) == 3         # different seeds, different runs
    np.testing.assert_allclose(acc[0], s1["per_member"]["train/loss"][0], rtol=1e-4)
    st = s3["member_stats"]["test/accuracy"]
    np.testing.assert_allclose(st["mean"], np.mean(s3["per_member"]["test/accuracy"]))
    np.testing.assert_allclose(st["std"], np.std(s3["per_member"]["test/accuracy"]))


def _launch(args, **kw):
    return subprocess.run([sys.executable, "-m", "jaxdl.main", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, **kw)


def test_multirun_sweeps_hidden_and_k1_k2(tmp_path):
    sweep = tmp_path / "sweep"
    p = _launch(["-m", "model.hidden=16,32", "tbptt.k1=5,10", "tbptt.k2=10,20", "train.epochs=1",
                 "task.length=100", "task.streams=2", "task.test_length=100", "train.progress=false",
                 f"hydra.sweep.dir={sweep}"], timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = sorted(d for d in sweep.iterdir() if d.is_dir() and (d / "summary.json").exists())
    assert len(jobs) == 8
    seen = set()
    for d in jobs:
        cfg = (d / ".hydra" / "overrides.yaml").read_text()
        seen.add(cfg)
        s = json.loads((d / "summary.json").read_text())
        assert s["tbptt"]["k1"] in (5, 10) and s["tbptt"]["k2"] in (10, 20)
        assert len(list((d / "wandb").glob("offline-run-*"))) == 1
    assert len(seen) == 8
    # the sweep's table is made from the run dirs alone
    sys.path.insert(0, str(ROOT / "experiments"))
    from sweep_report import collect, table
    groups = collect(sweep, None)
    assert len(groups) == 8 and all(len(v) == 1 for v in groups.values())
    rows = table(groups).splitlines()[2:]
    assert len(rows) == 8 and all("test/accuracy" in r for r in rows)
    assert any("model.hidden=16" in r and "tbptt.k1=5" in r and "tbptt.k2=20" in r for r in rows)


def _params_from_ckpt(run_dir, epoch):
    import orbax.checkpoint as ocp
    with ocp.CheckpointManager(run_dir / "checkpoints") as m:
        tree = m.restore(epoch, args=ocp.args.StandardRestore())
    return {k: np.asarray(v) for k, v in tree.items()}


def test_killed_run_resumes_bit_identical(tmp_path):
    args = ["task.length=400", "task.streams=8", "task.test_length=200", "model.hidden=32",
            "train.epochs=6", "train.checkpoint_every=1", "train.progress=false", "logger.mode=offline"]
    ref = tmp_path / "ref"
    p = _launch(args + [f"hydra.run.dir={ref}"], timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "jaxdl.main", *args, f"hydra.run.dir={run}"],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "3").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before it could be killed"
    p = _launch(args + [f"hydra.run.dir={run}"], timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "resumed" in p.stdout

    a, b = _params_from_ckpt(ref, 6), _params_from_ckpt(run, 6)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    strip = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert strip(ref) == strip(run)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ref, run))
    assert sa["final"] == sb["final"] and sa["best"] == sb["best"]


def test_diverging_run_stops_naming_epoch_and_step_and_keeps_checkpoints(tmp_path):
    from jaxdl.train.errors import TrainingDiverged
    base = TINY_ECHO + ["optim=sgd", "train.checkpoint_every=1", "logger.mode=disabled"]
    run_inprocess(tmp_path, base + ["optim.lr=0.1", "train.epochs=2"], "r")
    before = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    with pytest.raises(TrainingDiverged, match=r"epoch 3, step \d+.*checkpoint \(epoch 2\) is intact"):
        # a deliberate change of settings (train.resume=amend): resumes, then blows up
        run_inprocess(tmp_path, base + ["optim.lr=1e38", "train.epochs=4", "train.resume=amend"], "r")
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == before


def test_rerun_with_another_model_in_a_run_dir_is_refused_and_keeps_its_checkpoints(tmp_path):
    base = TINY_ECHO + ["train.checkpoint_every=1", "train.epochs=1", "logger.mode=disabled"]
    run_inprocess(tmp_path, base, "r")
    ck = tmp_path / "r" / "checkpoints"
    before = {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()}
    other = [o for o in base if not o.startswith("model.hidden")] + ["model.hidden=24"]
    from jaxdl.run.launches import LaunchRefused
    with pytest.raises(LaunchRefused, match=r"(?s)model\.hidden: 16 there, 24 now.*hydra\.run\.dir=<a new dir>"):
        run_inprocess(tmp_path, other, "r")
    # even when the change is asked for (amend), checkpoints of another shape cannot be resumed
    with pytest.raises(ValueError, match=r"another model or optimizer.*new hydra.run.dir"):
        run_inprocess(tmp_path, other + ["train.resume=amend"], "r")
    after = {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()}
    assert after == before
