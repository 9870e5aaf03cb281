"""The speed benchmarks of issue 11 run end to end at tiny sizes (plumbing, not speed:
speed is measured by running the scripts, never by a timed test), and the PyTorch peer of
the workload benchmark trains the same TBPTT(k1, k2) as jaxdl's engine."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def experiments(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import bench_gpu_step
    import bench_remat_memory
    import bench_tbptt_workload
    return bench_gpu_step, bench_tbptt_workload, bench_remat_memory


def test_gpu_step_benchmark_smoke_prints_both_modes_and_bf16(experiments, tmp_path, capsys):
    bench_gpu_step = experiments[0]
    out = tmp_path / "gpu.json"
    res = bench_gpu_step.main(["--smoke", "--peers", "jaxdl", "flax", "--reps", "1", "--warmup", "1",
                               "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| B, T, D, H | jaxdl TF32 | PyTorch TF32 | ratio |" in printed
    assert "jaxdl fp32" in printed and "jaxdl bf16" in printed
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {",".join(map(str, s)) for s in bench_gpu_step.SMOKE_SHAPES}
    for r in rows.values():
        for k in ("jaxdl_tf32", "jaxdl_fp32", "jaxdl_bf16", "flax_tf32", "flax_fp32"):
            assert r[k] > 0, k
    assert res["devices"]["jaxdl"] == jax.devices()[0].device_kind


def test_workload_echo_data_is_the_echo_task(experiments):
    """The benchmark's numpy-only echo (the GPU image has no Hydra) draws exactly what
    jaxdl.tasks.synthetic.echo draws for the default job."""
    from jaxdl.tasks.synthetic import EchoConfig, echo
    bench = experiments[1]
    cfg = bench.WORKLOADS["echo"]
    (xs, ys, ws), (xt, yt, wt), V = bench.echo_data(0, **cfg)
    task = echo(EchoConfig(lag=cfg["lag"], vocab=cfg["vocab"], length=cfg["length"], streams=cfg["streams"],
                           test_length=cfg["test_length"]), 0)
    np.testing.assert_array_equal(np.eye(V)[xs], task.train.x[0])
    np.testing.assert_array_equal(ys, task.train.y[0])
    np.testing.assert_array_equal(ws, task.train.weight[0])
    np.testing.assert_array_equal(yt, task.test.y[0])


@pytest.mark.parametrize("T,k1,k2", [(2000, 10, 20), (95, 10, 10), (37, 4, 10)])
def test_workload_windows_follow_the_engine_schedule(experiments, T, k1, k2):
    from jaxdl.train.tbptt import loss_steps
    w = experiments[1].windows(T, k1, k2)
    assert [range(f, e) for _, _, f, e in w] == loss_steps(T, k1, k2)
    for u, (a, n, f, e) in enumerate(w):
        assert a == max(f + k1 - k2, 0) and n == max(f + 2 * k1 - k2, 0)   # window start; next window's start
        if u + 1 < len(w):
            assert w[u + 1][0] == n


def test_workload_smoke_jaxdl_learns_and_reports(experiments, capsys):
    res = experiments[1].main(["--smoke", "--peers", "jaxdl", "--rounds", "1", "--workloads", "echo"])
    printed = capsys.readouterr().out
    assert "updates/s" in printed and "load average" in printed
    t = res["echo"]["jaxdl"]
    assert t["updates_per_s"] > 0 and 0.0 <= t["test"]["accuracy"] <= 1.0


def test_workload_torch_peer_trains_what_the_engine_trains(experiments):
    """Identical initial weights, Adam: the PyTorch loop's per-update losses over one epoch
    of TBPTT(10, 20) echo match jaxdl's engine update by update. (nn.LSTM's second bias,
    bias_hh, is frozen at 0 here: Adam would move both of its biases, twice jaxdl's one.)"""
    torch = pytest.importorskip("torch")
    bench = experiments[1]
    import optax
    from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
    from jaxdl.objectives import softmax_xent
    from jaxdl.train.tbptt import Batch, make_schedule, make_tbptt

    cfg = {**bench.WORKLOADS["echo"], **bench.SMOKE["echo"]}
    (xs, ys, ws), _, V = bench.echo_data(0, **cfg)
    T, B = xs.shape
    params = rnn_init(jax.random.PRNGKey(0), V, cfg["hidden"], V)
    opt = optax.adam(cfg["lr"])
    eng = make_tbptt(lambda p, x, c, m: rnn_apply(p, jax.nn.one_hot(x, V), c, m), softmax_xent, opt,
                     rnn_carry, make_schedule(T, cfg["k1"], cfg["k2"]), reset="epoch")
    batches = Batch(jnp.asarray(xs)[None], jnp.asarray(ys)[None], jnp.ones((1, T, B)), jnp.asarray(ws)[None])
    state = eng.fresh_state(params, jax.tree.map(lambda a: a[0], batches))
    _, _, _, out = jax.jit(eng.run_epoch)(params, opt.init(params), state, batches)
    ours = np.asarray(out["sums"]["loss"][0] / np.maximum(out["weight"][0], 1.0))
    lstm, lin, topt = bench.torch_model(V, cfg["hidden"], cfg["lr"], "cpu", init=params)
    lstm.bias_hh_l0.requires_grad_(False)
    x = torch.nn.functional.one_hot(torch.from_numpy(xs).long(), V).float()
    theirs = bench.torch_epoch(lstm, lin, topt, x, torch.from_numpy(ys).long(), torch.from_numpy(ws),
                               cfg["k1"], cfg["k2"]).numpy()
    assert ours.shape == theirs.shape == (T // cfg["k1"],)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-6)


def test_remat_memory_benchmark_smoke(experiments, capsys):
    rows = experiments[2].main(["--k2", "300", "--hidden", "16", "--streams", "2"])
    by = {r["remat"]: r for r in rows}
    assert by["none"]["xla_temp_mb"] > 2 * by["sqrt"]["xla_temp_mb"]
    assert abs(by["none"]["loss"] - by["sqrt"]["loss"]) < 1e-5        # the same training
    assert "peak RSS MB" in capsys.readouterr().out
