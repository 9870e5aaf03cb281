"""Search: members drawn from distributions, successive halving and PBT inside one
compiled program (jaxdl.search, docs/search.md); the Optuna sweeper across programs is in
tests/test_sweeper.py."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.configure import ConfigError, parse
from jaxdl.search import draw, hparams, schedules
from tests.helpers import ROOT, TINY_ECHO, compose_cfg, load_script, run_inprocess

QUIET = ["logger.mode=disabled", "train.progress=false"]
DRAWN = ["population.optim.lr={loguniform:[0.001,0.1]}", "population.samples=4"]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}


def _rows(d):
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


def _metric_rows(d, member):
    """A member's metric rows (not the schedule's event rows), without the member and hp keys."""
    return [{k: v for k, v in r.items() if k not in ("member", "hp")} for r in _rows(d)
            if r.get("member") == member and "halving" not in r and "pbt" not in r]


def test_same_seed_draws_the_same_members_and_loguniform_spreads_over_decades():
    spec = parse(compose_cfg(["population.optim.lr={loguniform:[1e-4,1e-1]}",
                              "population.model.forget_bias='uniform(0,2)'", "population.samples=400"])).search
    a, reps = draw.members(spec, 1, seed=3)
    b, _ = draw.members(spec, 1, seed=3)
    c, _ = draw.members(spec, 1, seed=4)
    assert a == b and a != c and len(a) == 400 and reps == [0] * 400
    lr = np.array([h["optim.lr"] for h in a])
    fb = np.array([h["model.forget_bias"] for h in a])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1 and fb.min() >= 0 and fb.max() <= 2
    # log-uniform: about a third of the draws in each decade (a uniform draw puts 90% in the last)
    counts = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1])[0]
    assert all(90 < n < 180 for n in counts), counts
    assert 0.8 < fb.mean() < 1.2 and abs(np.median(fb) - 1) < 0.2
    # grid x samples x replicas: every grid value meets every drawn point, replicas fastest
    spec2 = parse(compose_cfg(["population.optim.lr={loguniform:[1e-4,1e-1]}", "population.samples=3",
                               "population.model.forget_bias=[0.0,1.0]", "train.replicas=2"])).search
    hps, reps = draw.members(spec2, 2, seed=3)
    assert len(hps) == spec2.count(2) == 12 and reps == [0, 1] * 6
    assert [h["optim.lr"] for h in hps[:6:2]] == [h["optim.lr"] for h in hps[6::2]]


@pytest.mark.parametrize("override,key,hint", [
    ("population.optim.lr={loguniform:[0.0,0.1]}", "population.optim.lr", "low > 0"),
    ("population.optim.lr={normal:[0.0,0.1]}", "population.optim.lr", "unknown distribution"),
    ("population.optim.lr={uniform:[0.1,0.01]}", "population.optim.lr", "low < high"),
    ("population.samples=4", "population.samples", "no population key has one"),
    ("population.optim.lr={loguniform:[1e-4,0.1]}", "population.samples", "population.samples=8"),
    ("population.keep=0.5", "population.keep", "population.schedule=halving"),
    ("population.schedule=grid", "population.schedule", "one of"),
    ("population.group=2", "population.group", "without a schedule"),
])
def test_bad_search_settings_are_refused_naming_the_key(override, key, hint):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*" + hint):
        parse(compose_cfg([override]))


@pytest.mark.parametrize("extra,key,hint", [
    (["population.schedule=halving"], "population.every", "population.every=2"),
    (["population.schedule=halving", "population.every=4"], "population.every", "no decision before the end"),
    (["population.schedule=halving", "population.every=1", "population.perturb=[0.5]"], "population.perturb",
     "belongs to pbt"),
    (["population.schedule=pbt", "population.every=1", "population.truncate=0.1"], "population.truncate",
     "copies none"),
    (["population.schedule=halving", "population.every=1", "train.eval_every=2"], "population.every",
     "multiple of train.eval_every"),
    (["population.schedule=halving", "population.every=2", "population.group=0"], "population.group",
     "auto, all or an integer >= 1"),
    (["population.schedule=halving", "population.every=2", "population.group=some"], "population.group",
     "auto, all or an integer >= 1"),
    (["population.schedule=halving", "population.every=2", "population.group=5"], "population.group",
     "more than the population's 4 members"),
    (["population.schedule=halving", "population.every=2", "population.group=3", "mesh.replica=2"],
     "population.group", "mesh.replica=2 does not divide"),
    (["population.schedule=pbt", "population.every=2", "population.group=2"], "population.group",
     "group belongs to halving"),
])
def test_bad_schedules_are_refused_before_compute(extra, key, hint):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*" + hint):
        parse(compose_cfg(DRAWN + ["train.epochs=4"] + extra))


def test_pbt_needs_an_optimizer_value_to_explore():
    with pytest.raises(ConfigError, match="population.schedule.*pbt explores optimizer values"):
        parse(compose_cfg(["population.model.forget_bias=[0.0,1.0,2.0,3.0]", "population.schedule=pbt",
                           "population.every=1", "train.epochs=3"]))


def test_halving_keeps_the_top_half_by_val_and_survivors_equal_their_full_population_selves(tmp_path):
    base = TINY_ECHO + DRAWN + ["train.epochs=4"] + QUIET
    full, fd = run_inprocess(tmp_path, base, "full")
    half, hd = run_inprocess(tmp_path, base + ["population.schedule=halving", "population.every=2"], "half")
    # the same drawn members, recorded per member
    assert [m["hparams"] for m in full["members"]] == [m["hparams"] for m in half["members"]]
    assert len({m["hparams"]["optim.lr"] for m in full["members"]}) == 4
    # the top 2 of 4 by val/accuracy after epoch 2 in the full population survive
    at2 = {i: _metric_rows(fd, i)[1]["val/accuracy"] for i in range(4)}
    top = sorted(sorted(at2, key=lambda i: -at2[i])[:2])
    stopped = {m["member"]: m["stopped_at"] for m in half["members"]}
    assert sorted(i for i, e in stopped.items() if e is None) == top
    assert all(stopped[i] == 2 for i in range(4) if i not in top)
    for i in range(4):
        mine, theirs = _metric_rows(hd, i), _metric_rows(fd, i)
        assert len(mine) == (4 if i in top else 2)
        for a, b in zip(mine, theirs):            # survivors, after the rung too: as in the full population
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=f"member {i} {k}")
        rec = half["members"][i]
        assert rec["final"]["val/accuracy"] == mine[-1]["val/accuracy"]    # its last metrics
    # only the survivors trained on: the last checkpoint holds 2 members
    assert len(half["per_member"]["val/accuracy"]) == 2
    # the statistics over members say which: the survivors, of 4
    assert half["member_stats_over"]["members"] == top and half["member_stats_over"]["of"] == 4
    assert half["member_stats"]["test/accuracy"]["n"] == 2
    assert full["member_stats_over"] == {"members": [0, 1, 2, 3], "of": 4, "which": "every member"}
    sel = half["selection"]
    assert sel["member"] in top and sel["val"] == max(half["members"][i]["final"]["val/accuracy"] for i in top)
    assert half["search"] == {"schedule": "halving", "every": 2, "keep": 0.5, "group": 2}    # 4 -> 2: groups of 2
    # groups of 3 (the last group, and the rung of 2, filled up with copies), and every rung at
    # once (all: a program per rung count, as on an accelerator): the same stops, and every
    # member's rows its full-population self's (rtol as above; bitwise at this size)
    for group, recorded in (("3", 3), ("all", "all")):
        g, gd = run_inprocess(tmp_path, base + ["population.schedule=halving", "population.every=2",
                                                f"population.group={group}"], f"group{group}")
        assert g["search"]["group"] == recorded
        assert [m["stopped_at"] for m in g["members"]] == [m["stopped_at"] for m in half["members"]]
        for i in range(4):
            mine, theirs = _metric_rows(gd, i), _metric_rows(fd, i)
            assert len(mine) == (4 if i in top else 2)
            for a, b in zip(mine, theirs):
                for k in a:
                    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=f"group={group}: member {i} {k}")


def test_groups_fill_the_last_group_with_copies_and_drop_their_results():
    """_Groups: 5 members in groups of 2 -> [0,1] [2,3] [4,4]; outputs and the joined state are
    the 5 members' own; one group of all members is the state itself, not a copy."""
    from jaxdl.train.loop import _Groups
    state = {"w": jnp.arange(10.0).reshape(5, 2), "b": jnp.arange(5)}
    g = _Groups(5, 2)
    parts = g.split(state)
    assert g.count == 3 and [np.asarray(p["b"]).tolist() for p in parts] == [[0, 1], [2, 3], [4, 4]]
    joined = g.join(parts)
    for k in state:
        np.testing.assert_array_equal(np.asarray(joined[k]), np.asarray(state[k]))
    new, out = g.run(lambda s, c: ({"w": s["w"] + c, "b": s["b"]}, s["b"] * 10), parts, 1.0)
    np.testing.assert_array_equal(out, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(np.asarray(g.join(new)["w"]), np.asarray(state["w"]) + 1)
    np.testing.assert_array_equal(g.apply(lambda s: s["w"].sum(1), parts), np.asarray(state["w"]).sum(1))
    whole = _Groups(5, None)
    assert whole.split(state)[0] is state and whole.join([state]) is state and _Groups(5, 5).size is None


def _injected_state(lrs, seed=0):
    """A member-stacked state {"params", "opt_state"} with inject_hyperparams Adam, one lr each."""
    from jaxdl.config import OptimConfig
    from jaxdl.optimizers import optimizers
    _, member = optimizers(OptimConfig("adam", 0.01), injectable=True)

    def init(key, lr):
        p = {"w": jax.random.normal(key, (3, 2)), "b": jax.random.normal(jax.random.fold_in(key, 1), (2,))}
        opt = member({"optim.lr": lr})
        s = opt.init(p)
        g = jax.tree.map(jnp.ones_like, p)
        _, s = opt.update(g, s, p)           # nonzero moments: copied state is more than its init
        return {"params": p, "opt_state": s}
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(len(lrs)))
    return jax.vmap(init)(keys, jnp.asarray(lrs, jnp.float32))


def test_pbt_exploit_copies_state_exactly_and_explore_applies_the_drawn_factors():
    lrs = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008]
    state = _injected_state(lrs)
    scores = jnp.asarray([0.5, 0.9, 0.1, 0.7, 0.2, 0.95, 0.3, 0.6])      # best: 5, 1; worst: 2, 4
    new, src, factors = schedules.exploit_explore(state, scores, schedules.pbt_key(0, 2),
                                                  jnp.asarray([0.8, 1.25]), n=2, keys=("optim.lr",), higher=True)
    src, f = np.asarray(src), np.asarray(factors["optim.lr"])
    assert set(np.nonzero(src != np.arange(8))[0]) == {2, 4}
    assert set(src[[2, 4]]) <= {5, 1}
    old_lr, new_lr = np.asarray(hparams.read(state, ["optim.lr"])["optim.lr"]), \
        np.asarray(hparams.read(new, ["optim.lr"])["optim.lr"])
    for i in range(8):
        j = src[i]
        for a, b in zip(jax.tree.leaves(new["params"]), jax.tree.leaves(state["params"])):
            np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)[j])      # exploit: bit-exact
        mu_new, mu_old = new["opt_state"].inner_state[1][0].mu, state["opt_state"].inner_state[1][0].mu
        for a, b in zip(jax.tree.leaves(mu_new), jax.tree.leaves(mu_old)):
            np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)[j])
        if j == i:
            assert f[i] == 1.0 and new_lr[i] == old_lr[i]
        else:                                                                      # explore: donor's value x factor
            assert f[i] in (np.float32(0.8), np.float32(1.25))
            assert new_lr[i] == np.float32(old_lr[j] * f[i])
    # minimizing a loss ranks the other way: the lowest scores are the top
    _, src2, _ = schedules.exploit_explore(state, scores, schedules.pbt_key(0, 2), jnp.asarray([0.8, 1.25]),
                                           n=2, keys=("optim.lr",), higher=False)
    assert set(np.nonzero(np.asarray(src2) != np.arange(8))[0]) == {5, 1}
    # the same seed and epoch draw the same; another epoch draws anew
    again = schedules.exploit_explore(state, scores, schedules.pbt_key(0, 2), jnp.asarray([0.8, 1.25]),
                                      n=2, keys=("optim.lr",), higher=True)
    assert np.array_equal(np.asarray(again[1]), src)


def test_a_pbt_run_records_lineage_and_its_values_change_the_training(tmp_path):
    s, d = run_inprocess(tmp_path, TINY_ECHO + DRAWN + ["train.epochs=3", "population.schedule=pbt",
                                                        "population.every=1"] + QUIET, "pbt")
    rows = _rows(d)
    events = [r for r in rows if "pbt" in r]
    assert sorted({r["epoch"] for r in events}) == [1, 2] and all(sum(r["epoch"] == e for r in events) == 1
                                                                for e in (1, 2))     # floor(4 * 0.25) = 1
    hp = {(int(r["member"]), int(r["epoch"])): r["hp"]["optim.lr"] for r in rows if "hp" in r}
    drawn = {m["member"]: m["hparams"]["optim.lr"] for m in s["members"]}
    assert all(hp[(i, 1)] == pytest.approx(drawn[i], rel=1e-6) for i in range(4))
    for e in events:        # after the copy the member trains with the donor's value times the factor
        i, j, t = int(e["member"]), int(e["pbt"]["from"]), int(e["epoch"])
        assert hp[(i, t + 1)] == pytest.approx(hp[(j, t)] * e["pbt"]["factors"]["optim.lr"], rel=1e-6)
        assert e["pbt"]["factors"]["optim.lr"] in (pytest.approx(0.8), pytest.approx(1.25))
        assert s["members"][i]["copies"][[c["epoch"] for c in s["members"][i]["copies"]].index(t)]["from"] == j
    sel = s["selection"]
    line = sel["lineage"]
    assert line[-1]["member"] == sel["member"] and line[-1]["to_epoch"] == 3 and line[0]["from_epoch"] == 1
    assert [h["epoch"] for h in sel["hp_schedule"]] == [1, 2, 3]
    assert sel["hp_schedule"][-1]["optim.lr"] == sel["hp_final"]["optim.lr"]
    # the report's figures of the run, and its best val so far against wall time
    from jaxdl.search.report import best_so_far, figures
    paths = figures(d, tmp_path / "fig")
    assert sorted(p.name for p in paths) == ["best_vs_wall.png", "lineage.png", "members.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    prog = json.loads((d / "progress.json").read_text())
    pts = best_so_far(rows, "val/accuracy", True, prog)
    assert pts[-1][1] == max(r["val/accuracy"] for r in rows if "member" in r and "val/accuracy" in r)
    assert all(b[1] >= a[1] and b[0] >= a[0] for a, b in zip(pts, pts[1:]))
    # ./launch.sh report on the run dir shows the same figures under the schedule's heading
    from jaxdl.report import make_report
    md, _ = make_report([d], tmp_path / "rep")
    text = md.read_text()
    assert "## pbt:" in text and "lineage" in text and "best_vs_wall" in text
    assert (tmp_path / "rep" / "report_search0" / "lineage.png").stat().st_size > 1000


def _launch(args):
    return subprocess.run([sys.executable, "-m", "jaxdl.main", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)


def _ckpt(run_dir, epoch):
    import orbax.checkpoint as ocp
    with ocp.CheckpointManager(run_dir / "checkpoints") as m:
        tree = m.restore(epoch, args=ocp.args.StandardRestore())
    return {k: np.asarray(v) for k, v in tree.items()}


@pytest.mark.parametrize("schedule", ["halving", pytest.param("pbt", marks=pytest.mark.slow)])
def test_a_killed_search_run_resumes_bit_identical(tmp_path, schedule):
    """SIGKILL after the checkpoint that follows the first decision; the relaunch restores
    the survivors (halving) or the exploited state (pbt) and ends bit-identical to a run
    that was never killed: checkpointed arrays, metrics rows, summary."""
    args = ["task.length=400", "task.streams=8", "task.test_length=200", "model.hidden=32", "train.epochs=6",
            "train.checkpoint_every=1", "population.optim.lr={loguniform:[0.001,0.1]}", "population.samples=4",
            f"population.schedule={schedule}", "population.every=2"] + QUIET
    ref = tmp_path / "ref"
    run_inprocess(tmp_path, args, "ref")
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "jaxdl.main", *args, f"hydra.run.dir={run}"],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "3").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before it could be killed"
    p = _launch(args + [f"hydra.run.dir={run}"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "resumed" in p.stdout
    a, b = _ckpt(ref, 6), _ckpt(run, 6)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    if schedule == "halving":
        assert next(iter(a.values())).shape[0] == 1          # 4 -> 2 after epoch 2 -> 1 after epoch 4
    assert _rows(ref) == _rows(run)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ref, run))
    assert sa["members"] == sb["members"] and sa["selection"] == sb["selection"]


def test_the_search_study_smoke_runs_every_method_and_its_numbers_come_from_the_run_dirs(tmp_path):
    """experiments/search/study.py --smoke: every method at tiny sizes, one seed."""
    study = load_script("experiments/search/study.py")
    res = study.main(["--smoke", "--out", str(tmp_path)])
    for name in ("grid", "random", "halving", "pbt", "full16"):
        s = json.loads((tmp_path / "runs" / name / "seed0" / "summary.json").read_text())
        assert res[name]["val"]["mean"] == s["selection"]["val"] and res[name]["test"]["mean"] == s["selection"]["test"]
    assert res["halving"]["member_epochs"]["mean"] == 4 + 2            # 4 members 1 epoch, then 2
    assert res["full16"]["member_epochs"]["mean"] == 8
    assert (tmp_path / "best_val_vs_wall.png").stat().st_size > 1000
    assert "| halving |" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
def test_the_search_study_halving_picks_what_the_full_population_picks(tmp_path):
    """The full study (about 25 min on 2 loaded cores): per seed, halving's selection is the
    full 16-member population's, at under half its member-epochs."""
    study = load_script("experiments/search/study.py")
    res = study.main(["--out", str(tmp_path)])
    for h, f in zip(res["halving"]["runs"], res["full16"]["runs"]):
        assert h["val"] == pytest.approx(f["val"], abs=1e-3) and h["member_epochs"] < f["member_epochs"] / 2


_ON_DEVICES = r'''
import json, sys
from pathlib import Path
from tests.helpers import TINY_ECHO, run_inprocess
sched = sys.argv[2]
base = TINY_ECHO + ["population.optim.lr={loguniform:[0.001,0.1]}", "population.samples=4", "train.epochs=3",
                    "logger.mode=disabled", f"population.schedule={sched}",
                    f"population.every={ {'halving': 2, 'pbt': 1}[sched] }"]
out = {}
for r in (1, 2):
    s, d = run_inprocess(sys.argv[1], base + [f"mesh.replica={r}"], f"{sched}{r}")
    rows = [json.loads(x) for x in (Path(d) / "metrics.jsonl").read_text().splitlines()]
    out[r] = {k: s[k] for k in ("members", "selection", "mesh")} | {"rows": rows}
print(json.dumps(out))
'''


@pytest.mark.parametrize("sched", ["halving", pytest.param("pbt", marks=pytest.mark.slow)])
def test_halving_and_pbt_on_two_cpu_devices_give_the_members_stops_and_lineage_of_one_device(tmp_path, sched):
    """mesh.replica=2 (two forced CPU devices, members split over them) against one device:
    the same rung stops (4 -> 2 after epoch 2), the same PBT copies, donors, factors and
    lineage, the same selection, and every member row equal (rtol 1e-5: another layout may
    sum in another order)."""
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAXDL_COMPILE_CACHE": "off"}
    p = subprocess.run([sys.executable, "-c", _ON_DEVICES, str(tmp_path), sched], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    one, two = out["1"], out["2"]
    assert one["mesh"]["replica"] == 1 and two["mesh"]["replica"] == 2
    for a, b in zip(one["members"], two["members"]):
        assert a["hparams"] == b["hparams"]
        if sched == "halving":
            assert a["stopped_at"] == b["stopped_at"]
        else:
            assert [(c["epoch"], c["from"], c["factors"]) for c in a["copies"]] == \
                   [(c["epoch"], c["from"], c["factors"]) for c in b["copies"]]
    assert one["selection"]["member"] == two["selection"]["member"]
    assert one["selection"]["val"] == pytest.approx(two["selection"]["val"], rel=1e-5)
    if sched == "halving":
        assert sorted(str(m["stopped_at"]) for m in one["members"]) == ["2", "2", "None", "None"]
    else:
        assert one["selection"]["lineage"] == two["selection"]["lineage"]
        assert sum(len(m["copies"]) for m in one["members"]) == 2             # floor(4 * 0.25) at epochs 1, 2
    ra, rb = one["rows"], two["rows"]
    assert len(ra) == len(rb)
    for a, b in zip(ra, rb):
        assert a.keys() == b.keys() and a.get("member") == b.get("member") and a.get("epoch") == b.get("epoch")
        for k, v in a.items():
            if isinstance(v, float):
                assert v == pytest.approx(b[k], rel=1e-5, abs=1e-7), (sched, k, a.get("member"))
