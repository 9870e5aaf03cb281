"""Populations: a grid of non-shape hyperparameters trained as members of one compiled
program, each member equal to a run of its own; selection on validation only."""
import json

import numpy as np
import pytest

from jaxdl.configure import ConfigError, parse
from tests.helpers import TINY_ECHO, compose_cfg, run_inprocess

QUIET = ["logger.mode=disabled", "train.progress=false"]
BASE = TINY_ECHO + ["train.epochs=2"] + QUIET


def _member_rows(d, i):
    return [{k: v for k, v in json.loads(x).items() if k != "member"}
            for x in (d / "metrics.jsonl").read_text().splitlines() if json.loads(x).get("member") == i]


def _rows(d):
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("grid,solo", [
    (["population.optim.lr=[0.003,0.03]", "population.model.forget_bias=[0.0,2.0]"],
     ["optim.lr=0.03", "model.forget_bias=0.0"]),
    (["optim=adamw", "population.optim.weight_decay=[0.0,0.1]", "population.optim.clip=[0.0,0.5]"],
     ["optim=adamw", "optim.weight_decay=0.1", "optim.clip=0.5"]),
])
def test_every_member_equals_a_run_of_its_own(tmp_path, grid, solo):
    s, d = run_inprocess(tmp_path, BASE + grid + ["train.replicas=2"], "pop")
    assert len(s["members"]) == 8                      # 2 x 2 values x 2 replicas
    want = {k.split("=")[0]: float(k.split("=")[1]) for k in solo if not k.startswith("optim=")}
    i = next(m["member"] for m in s["members"]
             if m["replica"] == 1 and all(m["hparams"].get(k, None) == v for k, v in want.items()
                                          if k in m["hparams"]))
    ref, rd = run_inprocess(tmp_path, BASE + solo + ["train.replicas=2"], "solo")
    mine, theirs = _member_rows(d, i), _member_rows(rd, 1)       # replica 1 of the solo run: the same seed
    assert len(mine) == len(theirs) == 2
    for a, b in zip(mine, theirs):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
    other = next(m["member"] for m in s["members"] if m["member"] != i and m["replica"] == 1)
    assert _member_rows(d, other)[-1]["train/loss"] != mine[-1]["train/loss"]   # the values matter


def test_summary_records_members_and_selects_on_val(tmp_path):
    s, d = run_inprocess(tmp_path, BASE + ["population.optim.lr=[0.0001,0.03]", "train.replicas=2"], "p")
    assert s["population"] == {"optim.lr": [0.0001, 0.03]}
    finals = {m["member"]: m["final"] for m in s["members"]}
    sel = s["selection"]
    assert sel["by"] == "val/accuracy"
    assert sel["val"] == max(f["val/accuracy"] for f in finals.values())
    assert sel["test"] == finals[sel["member"]]["test/accuracy"]
    assert sel["hparams"] == s["members"][sel["member"]]["hparams"]
    # the means in the run's rows are over all members
    last = [r for r in _rows(d) if "member" not in r][-1]
    assert last["test/accuracy"] == pytest.approx(np.mean([f["test/accuracy"] for f in finals.values()]), rel=1e-6)


@pytest.mark.parametrize("override,key,hint", [
    ("population.model.hidden=[16,32]", "population.model.hidden", "multirun"),
    ("population.tbptt.k2=[4,16]", "population.tbptt.k2", "multirun"),
    ("population.optim.lr=[]", "population.optim.lr", "non-empty list"),
    ("population.optim.lr=[0.1,-1]", "population.optim.lr", "> 0"),
    ("population.optim.weight_decay=[0.1]", "population.optim.weight_decay", "optim=adamw"),
])
def test_bad_populations_are_refused_before_compute(override, key, hint):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*" + hint):
        parse(compose_cfg([override]))


def test_a_population_on_a_fixed_configuration_trainer_is_refused():
    with pytest.raises(ConfigError, match="population.*multirun"):
        parse(compose_cfg(["task=forecast", "population.optim.lr=[0.001,0.01]"]))


def test_each_member_is_a_wandb_run_of_the_group(tmp_path):
    """wandb (offline here) gets one run per member beside the run's own, so its grouping
    and parallel-coordinates views can compare members."""
    s, d = run_inprocess(tmp_path, TINY_ECHO + ["train.epochs=1", "train.progress=false", "logger.mode=offline",
                                                "population.optim.lr=[0.003,0.03]"], "w")
    runs = sorted(p.name for p in (d / "wandb").glob("offline-run-*"))
    assert len(runs) == 3
    main_id = (d / "wandb_id.txt").read_text().strip()
    assert sorted(r.rsplit("-", 1)[-1] for r in runs if "-m" in r.rsplit("_", 1)[-1]) == ["m0", "m1"]
    assert all(main_id in r for r in runs)
