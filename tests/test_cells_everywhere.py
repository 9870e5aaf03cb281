"""Every cell (model=gru, rnn, lru, mingru beside the LSTM) runs everywhere the LSTM runs: every
stream task, stacked layers, replicas and populations, the device mesh, bf16 and remat,
checkpoints and resume. (The cells' own gradients and their equality with PyTorch are in
tests/test_cells.py; the engine's windows for every cell in tests/test_tbptt.py.)"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT, TINY_ECHO, run_inprocess

QUIET = ["logger.mode=disabled", "train.progress=false"]
CELLS = ["gru", "rnn"]
# the element-wise cells in their yaml's block, in the slow set (the CI time budget); CI runs the
# LRU's online learning below (tests/test_linear_cells.py and test_elementwise_estimators.py check
# the cells and the estimators themselves)
SLOW = pytest.mark.slow
LINEAR = [pytest.param("lru", marks=SLOW), pytest.param("mingru", marks=SLOW)]


def _rows(d):
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


# the minGRU in its yaml's blocks with model.conv=4: its decays read the current input only, and
# the convolution before the recurrence is its delay line (docs/cells.md, "What they learn")
@pytest.mark.parametrize("cell", CELLS + LINEAR)
def test_echo_is_learned_by_every_cell(tmp_path, cell):
    s, _ = run_inprocess(tmp_path, TINY_ECHO + [f"model={cell}", "task.lag=3", "task.streams=8", "train.epochs=12",
                                                "model.hidden=32", "optim.lr=0.02"] + QUIET)
    assert s["final"]["test/accuracy"] > 0.9, s["final"]          # chance 0.25
    assert s["config"]["model"]["name"] == cell and s["config"]["model"]["forget_bias"] is None


@pytest.mark.parametrize("cell", CELLS + LINEAR)
@pytest.mark.parametrize("task", [
    ["task=adding", "task.length=12", "task.train_size=128", "task.test_size=64", "task.val_size=64", "task.batch=32"],
    ["task=sine", "task.length=200", "task.streams=4", "task.test_length=100", "task.val_length=100"],
])
def test_every_stream_task_runs_every_cell_stacked(tmp_path, cell, task):
    s, _ = run_inprocess(tmp_path, task + [f"model={cell}", "model.layers=2", "model.hidden=8", "train.epochs=2"]
                         + QUIET)
    assert np.isfinite(s["final"]["train/loss"]) and s["final"]["train/loss"] < 1.0
    assert s["num_params"] > 0 and s["epochs_run"] == 2


def test_textgen_runs_a_gru(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    s, d = run_inprocess(tmp_path, ["task=textgen", f"task.path={f}", "task.streams=4", "model=gru",
                                    "model.hidden=16", "tbptt.k1=10", "tbptt.k2=10", "train.epochs=2",
                                    "task.sample_chars=20", "task.prime=the"] + QUIET)
    assert s["final"]["test/bpc"] < s["chance"]                   # below the unigram model
    text = (d / "sample.txt").read_text()
    assert text.startswith("the") and len(text) == len("the") + 20


# float32 training amplifies the vmapped program's other summation order: the LRU (complex
# products) is compared after one epoch
@pytest.mark.parametrize("cell,epochs", [(c, 2) for c in CELLS] + [pytest.param("lru", 1, marks=SLOW),
                                                                 pytest.param("mingru", 1, marks=SLOW)])
def test_a_population_member_equals_its_solo_run(tmp_path, cell, epochs):
    base = TINY_ECHO + [f"model={cell}", f"train.epochs={epochs}"] + QUIET
    s, d = run_inprocess(tmp_path, base + ["population.optim.lr=[0.003,0.03]"], "pop")
    i = next(m["member"] for m in s["members"] if m["hparams"]["optim.lr"] == 0.03)
    _, rd = run_inprocess(tmp_path, base + ["optim.lr=0.03"], "solo")
    mine = [r for r in _rows(d) if r.get("member") == i]
    theirs = _rows(rd)
    assert len(mine) == len(theirs) == epochs
    for a, b in zip(mine, theirs):
        for k in b:
            if k not in ("epoch", "step"):
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)


@pytest.mark.parametrize("cell,extra", [(c, []) for c in CELLS] + [
    pytest.param(c, [], marks=SLOW) for c in ("lru", "mingru")] + [
    pytest.param("lru", ["estimator=zucchet", "model.layers=2", "model.scan=parallel"], marks=SLOW),
    pytest.param("mingru", ["estimator=rtrl", "model.layers=1"], marks=SLOW)])
def test_resume_is_bit_identical(tmp_path, cell, extra):
    base = TINY_ECHO + [f"model={cell}", "train.checkpoint_every=1"] + extra + QUIET
    whole, _ = run_inprocess(tmp_path, base + ["train.epochs=3"], "whole")
    run_inprocess(tmp_path, base + ["train.epochs=2"], "split")
    again, d = run_inprocess(tmp_path, base + ["train.epochs=3"], "split")
    assert [r["epoch"] for r in _rows(d)] == [1, 2, 3]
    assert again["final"] == whole["final"]


@pytest.mark.parametrize("cell", ["gru"] + LINEAR)
def test_bf16_and_remat_keep_a_cell_learning(tmp_path, cell):
    base = TINY_ECHO + [f"model={cell}", "task.lag=3", "train.epochs=4", "model.hidden=32"] + QUIET
    f32, _ = run_inprocess(tmp_path, base, "f32")
    low, _ = run_inprocess(tmp_path, base + ["model.dtype=bfloat16", "model.remat=sqrt"], "bf16")
    assert low["final"]["test/accuracy"] > f32["final"]["test/accuracy"] - 0.1 > 0.3


@pytest.mark.parametrize("cell", ["gru"] + LINEAR)
def test_a_cell_on_a_four_device_mesh_equals_one_device(tmp_path, cell):
    env = {**os.environ, "WANDB_MODE": "offline", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    args = TINY_ECHO + [f"model={cell}", "train.epochs=2", "train.replicas=2"] + QUIET
    out = {}
    for name, mesh in (("one", []), ("mesh", ["mesh.replica=2", "mesh.data=2"])):
        p = subprocess.run([sys.executable, "-m", "jaxdl.main", *args, *mesh, f"hydra.run.dir={tmp_path}/{name}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        out[name] = json.loads((tmp_path / name / "summary.json").read_text())
    assert out["mesh"]["mesh"]["replica"] == 2 and out["mesh"]["mesh"]["data"] == 2
    for k, v in out["one"]["per_member"].items():
        np.testing.assert_allclose(out["mesh"]["per_member"][k], v, rtol=1e-5, atol=1e-7, err_msg=k)


def test_forget_bias_is_refused_for_cells_without_a_forget_gate():
    from jaxdl.configure import ConfigError, parse
    from tests.helpers import compose_cfg
    with pytest.raises(ConfigError, match="model.forget_bias: model 'gru' has no forget gate"):
        parse(compose_cfg(["model=gru", "+model.forget_bias=1.0"]))
    with pytest.raises(ConfigError, match="population.model.forget_bias: only model=lstm"):
        parse(compose_cfg(["model=rnn", "population.model.forget_bias=[0.0,1.0]"]))


def test_candidate_init_identity_sets_the_g_block_of_the_recurrent_weights_only():
    """model.candidate_init=identity (Cooijmans et al. 2017's recurrent init) reaches the LSTM's
    init through the config: Wh's g block is the identity, the other blocks are those of the
    default init under the same key; other cells and other values are refused."""
    import jax
    import jax.numpy as jnp

    from jaxdl.configure import ConfigError, parse
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.tbptt_trainer import init_params
    from tests.helpers import compose_cfg
    task = echo(EchoConfig(lag=2, length=20, streams=2, test_length=20, val_length=0), 0)
    cfgs = {v: parse(compose_cfg(["model.hidden=5", f"model.candidate_init={v}"])).model
            for v in ("orthogonal", "identity")}
    wh = {v: init_params(jax.random.PRNGKey(3), task, m, {})["layers"][0].wh for v, m in cfgs.items()}
    H = 5
    np.testing.assert_array_equal(wh["identity"][:, 2 * H:3 * H], jnp.eye(H))
    np.testing.assert_array_equal(np.delete(wh["identity"], np.s_[2 * H:3 * H], axis=1),
                                  np.delete(wh["orthogonal"], np.s_[2 * H:3 * H], axis=1))
    assert not np.allclose(wh["orthogonal"][:, 2 * H:3 * H], np.eye(H))
    with pytest.raises(ConfigError, match="model.candidate_init: model 'gru' does not take it"):
        parse(compose_cfg(["model=gru", "+model.candidate_init=identity"]))
    with pytest.raises(ConfigError, match="model.candidate_init: must be one of"):
        parse(compose_cfg(["model.candidate_init=eye"]))


@pytest.mark.parametrize("est", ["rtrl", pytest.param("zucchet", marks=SLOW)])
def test_an_lru_learns_echo_online(tmp_path, est):
    """Online, no window: one LRU block with exact RTRL (its element-wise form), or two with
    Zucchet et al.'s rule, learn the echo job through the real loop."""
    layers = "1" if est == "rtrl" else "2"
    s, _ = run_inprocess(tmp_path, TINY_ECHO + ["model=lru", f"model.layers={layers}", f"estimator={est}",
                                                "task.lag=3", "train.epochs=6", "estimator.every=5"] + QUIET)
    assert s["final"]["test/accuracy"] > 0.9, s["final"]          # chance 0.25
