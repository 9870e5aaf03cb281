"""The typed config: one schema, every setting acts or is refused, the Keras-style tasks
take optim.*, the run records its effective settings, and the packages import downward."""
import ast
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml

from jaxdl.config import OptimConfig, RecurrentConfig, TrainConfig
from jaxdl.config.fields import ConfigError, check, setting
from jaxdl.configure import parse
from tests.helpers import ROOT, TINY_ECHO, compose_cfg, run_inprocess


def parsed(overrides):
    return parse(compose_cfg(overrides), overrides)


@pytest.mark.parametrize("overrides, key, why", [
    (["task=forecast", "tbptt.k1=5"], "tbptt.k1", "stream tasks"),
    (["task=forecast", "model.remat=sqrt"], "model.remat", "Keras-style tasks"),
    (["task=forecast", "+estimator.every=5"], "estimator.every", "stream tasks"),
    (["task=echo", "train.batch_size=3"], "train.batch_size", "streams"),
    (["task=xor", "train.epochs=3"], "train.epochs", "model.iterations"),
    (["task=salary", "optim=sgd"], "optim", "model.rate"),
    (["task=adding", "tbptt.reset=epoch"], "tbptt.reset=epoch", "resets the state every batch"),
    (["task=echo", "train.shuffle=false"], "train.shuffle", "never shuffles"),
    (["task=echo", "+estimator.every=5"], "estimator.every", "online estimators"),
    (["task=echo", "+optim.momentum=0.5"], "optim.momentum", "only optim=sgd"),
    (["task=echo", "+optim.weight_decay=0.1"], "optim.weight_decay", "only optim=adamw"),
    (["task=forecast", "population.optim.lr=[0.1,0.2]"], "population", "multirun"),
])
def test_a_setting_the_task_does_not_use_is_refused_naming_it(overrides, key, why):
    with pytest.raises(ConfigError, match=f"^{key.replace('.', '[.]')}:.*{why}"):
        parsed(overrides)


@pytest.mark.parametrize("override, line", [
    ("model.hiden=32", "model.hiden: is not a setting of model 'lstm' (did you mean model.hidden?); it takes"),
    ("optim.lrr=0.1", "optim.lrr: is not a setting of the optimizer (did you mean optim.lr?); it takes"),
    ("train.epoch=3", "train.epoch: is not a setting of training (did you mean train.epochs?); it takes"),
    ("seeds=1", "seeds: is not a config key (did you mean seed?); known keys"),
    ("population.optim.lrr=[0.1,0.2]", "population.optim.lrr: cannot vary (did you mean population.optim.lr?)"),
    ("model=lsmt", "model=lsmt: there is no model 'lsmt' (did you mean model=lstm?); the options: ['gru',"),
    ("optim=adamm", "optim=adamm: there is no optim 'adamm' (did you mean optim=adam?)"),
])
def test_a_misspelt_key_or_group_option_gets_the_closest_one(override, line):
    """Keys Hydra would refuse with its own boilerplate (not in the composed config, no +)
    get the words a +key gets from configure.parse, with the closest key or option."""
    from jaxdl.command_line import check_command_line
    got = check_command_line(["train.epochs=2", override, "train.progress=false"])
    assert got is not None and got.startswith(line), got


def test_known_keys_and_what_hydra_words_itself_pass_the_command_line_check(monkeypatch):
    from jaxdl.command_line import check_command_line
    assert check_command_line(["-m", "model=gru,lstm", "optim.lr=0.1,0.01", "task=adding", "task.batch=4",
                               "hydra.run.dir=/tmp/x", "+model.hiden=3", "train.progress=false"]) is None
    assert check_command_line(["model.hidden=[oops"]) is None           # Hydra's own syntax error
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    assert check_command_line(["model.hiden=32"]) is None


def test_a_misspelt_key_ends_in_one_line_and_exit_2_and_hydra_full_error_shows_hydras(tmp_path):
    import os
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "jaxdl.main", "model.hiden=32", f"hydra.run.dir={tmp_path / 'r'}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(
        "[jaxdl] config error: model.hiden: is not a setting of model 'lstm' (did you mean model.hidden?)")
    assert not any((tmp_path / "r").iterdir())          # nothing written (the dir is made by the run-dir check)
    r = subprocess.run(cmd, cwd=ROOT, env={**env, "HYDRA_FULL_ERROR": "1"}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "Could not override 'model.hiden'" in r.stderr and "[jaxdl]" not in r.stderr


def test_settings_that_act_pass():
    c = parsed(["task=forecast", "optim=sgd", "optim.momentum=0.9", "model.layers=2", "train.batch_size=8"])
    assert (c.optim.name, c.optim.momentum, c.model.layers, c.train.batch_size) == ("sgd", 0.9, 2, 8)
    c = parsed(["task=adding", "tbptt.reset=batch", "train.shuffle=false"])
    assert c.tbptt.reset == "batch" and c.train.shuffle is False
    c = parsed(["task=echo", "tbptt.reset=batch", "train.shuffle=false"])
    assert c.train.shuffle is False


def test_types_and_bounds_come_from_the_schema():
    with pytest.raises(ConfigError, match=r"^tbptt\.k1: must be an integer, got 'abc'"):
        parsed(["tbptt.k1=abc"])
    with pytest.raises(ConfigError, match=r"^model\.dtype: must be one of \['float32', 'bfloat16'\]"):
        parsed(["model.dtype=float16"])
    with pytest.raises(ConfigError, match=r"^task\.lagg: is not a setting of task 'echo' "
                                          r"\(did you mean task\.lag\?\); it takes \['name', 'lag'"):
        parsed(["+task.lagg=3"])
    with pytest.raises(ConfigError, match=r"^model\.hidden: must be a non-empty list of values >= 1"):
        parsed(["task=digits", "model.hidden=[0]"])
    # the checker itself: bounds, choices, None for an unset optional
    @dataclasses.dataclass
    class C:
        a: int = setting(1, ge=1)
        b: str = setting("x", choices=("x", "y"))
        c: object = setting(None, gt=0)
    check(C(), "g")
    for bad, msg in ((C(a=0), "g.a: must be >= 1"), (C(b="z"), "g.b: must be one of"), (C(c=0), "g.c: must be > 0")):
        with pytest.raises(ConfigError, match=msg):
            check(bad, "g")


def test_the_yaml_files_hold_only_keys_of_the_schema():
    """Every key of every conf/ group file is a field of its group's schema class, so no
    value is read from anywhere but a declared setting."""
    from jaxdl.config import schema
    from jaxdl.tasks import TASKS
    groups = {"optim": schema.OptimConfig, "estimator": schema.EstimatorConfig, "logger": schema.LoggerConfig}
    for group, cls in groups.items():
        for f in (ROOT / "conf" / group).glob("*.yaml"):
            keys = set(yaml.safe_load(f.read_text()) or {})
            assert keys <= {x.name for x in dataclasses.fields(cls)}, f
    for name, entry in TASKS.items():
        values = yaml.safe_load((ROOT / "conf" / "task" / f"{name}.yaml").read_text())
        values = values.get("task", values)
        fields = {x.name for x in dataclasses.fields(entry.config)}
        assert set(values) - {"defaults"} <= fields, name
        assert values["name"] == name


def test_forecast_with_optim_sgd_trains_with_sgd():
    """The Keras-style tasks take optim.*: one update is exactly SGD's p - lr * g."""
    from jaxdl.tasks import TASKS, build
    c = parsed(["task=forecast", "optim=sgd", "optim.lr=0.05", "optim.clip=0"])
    task = build(TASKS["forecast"], c.task, c.seed, c.data_dir, c.model, c.optim, c.train)
    comp = task.model
    ts = comp.init(jax.random.PRNGKey(0))
    assert not any(isinstance(s, optax.ScaleByAdamState) for s in jax.tree.leaves(
        ts.opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState)))
    g = jax.tree.map(jnp.ones_like, ts.params)
    upd, _ = comp.optimizer.update(g, ts.opt_state, ts.params)
    np.testing.assert_allclose(jax.tree.leaves(upd)[0], -0.05 * np.ones_like(jax.tree.leaves(upd)[0]), rtol=1e-6)
    c2 = parsed(["task=forecast", "optim=adam"])
    task2 = build(TASKS["forecast"], c2.task, c2.seed, c2.data_dir, c2.model, c2.optim, c2.train)
    assert any(isinstance(s, optax.ScaleByAdamState) for s in jax.tree.leaves(
        task2.model.init(jax.random.PRNGKey(0)).opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState)))


def test_workflow_task_builds_the_configured_stack():
    from jaxdl.tasks import forecast
    task = forecast.forecast(forecast.ForecastConfig(), 0, RecurrentConfig(hidden=8, layers=2),
                             OptimConfig("adam", lr=1e-3), TrainConfig(batch_size=4))
    kinds = [type(layer).__name__ for layer in task.model.model.layers]
    assert kinds == ["LSTM", "LSTM", "Dense"]
    assert task.model.model.layers[0].return_sequences and not task.model.model.layers[1].return_sequences


def test_summary_and_wandb_record_the_effective_settings_and_provenance(tmp_path):
    s, d = run_inprocess(tmp_path, TINY_ECHO + ["train.epochs=1", "logger.mode=offline", "optim.lr=0.02"])
    assert s["config"]["optim"] == {"name": "adam", "lr": 0.02, "clip": 1.0, "momentum": 0.0, "weight_decay": 0.0}
    assert s["config"]["model"]["hidden"] == 16 and s["config"]["task"]["name"] == "echo"
    assert s["provenance"]["overrides"] == TINY_ECHO + ["train.epochs=1", "logger.mode=offline", "optim.lr=0.02"]
    on_disk = json.loads((d / "summary.json").read_text())
    assert on_disk["config"] == s["config"]
    # an offline run keeps its config in the binary .wandb log, as protobuf records whose
    # values are JSON text: the effective optimizer and the provenance's overrides are there
    # the wandb service writes that log from its own process: under load finish() has returned
    # before the records reach the file (only its header there), so read until they do
    (log,) = (d / "wandb").glob("offline-run-*/run-*.wandb")
    want = b'"optim":{"name":"adam","lr":0.02,"clip":1.0,"momentum":0.0'
    deadline = time.monotonic() + 60
    while want not in (data := log.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert want in data
    assert b'"logger.mode=offline","optim.lr=0.02"]' in data and b"provenance" in data


def _imports(pkg_dir: Path) -> set[str]:
    """The jaxdl packages a package's modules import (module level and inside functions)."""
    found = set()
    for f in pkg_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                parts = n.split(".")
                if parts[0] == "jaxdl" and len(parts) > 1:
                    found.add(parts[1])
    return found - {pkg_dir.name}


def test_packages_import_downward_only():
    """No package cycles; train/ imports neither tasks/ nor classic/; tasks/ does not
    import train/; models/ and data/ and config/ import no trainer, task or run layer."""
    pkgs = {p.name: _imports(p) for p in (ROOT / "jaxdl").iterdir() if (p / "__init__.py").exists()}
    assert not pkgs["train"] & {"tasks", "classic"}, pkgs["train"]
    assert "train" not in pkgs["tasks"], pkgs["tasks"]
    for low in ("models", "data", "config"):
        assert not pkgs[low] & {"train", "tasks", "classic", "run", "workflow", "report"}, (low, pkgs[low])
    # acyclic: a topological order exists
    graph = {k: v & set(pkgs) for k, v in pkgs.items()}
    while graph:
        leaves = [k for k, v in graph.items() if not v]
        assert leaves, f"import cycle among {sorted(graph)}: {graph}"
        for k in leaves:
            graph.pop(k)
        for v in graph.values():
            v.difference_update(leaves)


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_shipped_recipe_composes_and_types(recipe):
    """Each conf/experiment/*.yaml becomes a typed config (no compute): a recipe that sets a
    renamed or refused key fails here, not hours into a run."""
    config = parse(compose_cfg([f"experiment={recipe}"]), [f"experiment={recipe}"])
    assert config.task.name and config.train.epochs >= 1
