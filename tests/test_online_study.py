"""The online-learning study (experiments/online/study.py): its gradient probes against the
exact gradient where they must equal it, and its smoke run (tiny sizes, the echo part) through
training, cost and the tables. The full study is marked slow."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import load_script


def _study():
    return load_script("experiments/online/study.py")


def _echo(lag=3):
    from jaxdl.tasks.synthetic import EchoConfig, echo
    return echo(EchoConfig(lag=lag, vocab=3, length=30, streams=2, test_length=30, val_length=0), 0)


def _params(task, model, seed=1):
    from jaxdl.train.tbptt_trainer import init_params
    return init_params(jax.random.PRNGKey(seed), task, model, {})


def _close(a, b, tol=1e-4):
    fa, fb = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)]), np.concatenate(
        [np.ravel(x) for x in jax.tree.leaves(b)])
    assert np.abs(fa - fb).max() <= tol * np.abs(fb).max(), np.abs(fa - fb).max()


def test_probes_equal_the_exact_gradient_where_they_are_exact():
    """On one minGRU layer (element-wise: RTRL and the Zucchet rule are exact there) the window
    gradient of rtrl and zucchet, and of TBPTT with a window covering the whole prefix, equal
    BPTT through the prefix; a window shorter than the lag does not (its cosine < 0.999)."""
    st = _study()
    from jaxdl.config.schema import RecurrentConfig
    task = _echo()
    model = RecurrentConfig(name="mingru", hidden=3, layers=1)
    p = _params(task, model)
    b = jax.tree.map(lambda a: jnp.asarray(a[0][:16]), task.test)
    lo, hi = 10, 16
    exact = st.exact_grad(task, model, p, b, lo, hi)
    _close(st.tbptt_grad(task, model, p, b, lo, hi, 6, 16), exact)
    for name in ("rtrl", "zucchet"):
        _close(st.online_grad(task, name, p, b, lo, hi, jax.random.PRNGKey(0)), exact)
    assert st.cosine(st.tbptt_grad(task, model, p, b, lo, hi, 6, 3), exact) < 0.999


@pytest.mark.parametrize("k1,k2,lo", [(4, 3, 4)])
def test_tbptt_probe_sums_the_engines_windows(k1, k2, lo):
    """TBPTT(k1, k2) over a window of several updates equals the sum of the engine's own
    update gradients (jaxdl.train.tbptt.window_loss, times its weight sum), here for k1 > k2 (cuts
    at the k2-step chunks; k1 < k2 is the minGRU test's TBPTT(6, 16))."""
    st = _study()
    from jaxdl.config.schema import RecurrentConfig
    from jaxdl.models.rnn import rnn_carry
    from jaxdl.objectives import get_objective
    from jaxdl.train.tbptt import window_loss
    task = _echo()
    model = RecurrentConfig(name="gru", hidden=3)
    p = _params(task, model)
    b = jax.tree.map(lambda a: jnp.asarray(a[0][:12]), task.test)
    apply_fn, _ = st._loss_fn(task, model)
    obj = get_objective(task.loss)
    want, L = None, max(k1, k2)
    for e in range(lo + k1, 13, k1):
        c = rnn_carry(p, 2)
        if e - L > 0:
            _, c = apply_fn(p, b.x[:e - L], c, b.mask[:e - L])
        w = jax.tree.map(lambda a: a[e - L:e], b)
        g, (_, _, wsum) = jax.grad(lambda q: window_loss(apply_fn, obj, k1, k2, q, c, w), has_aux=True)(p)
        g = jax.tree.map(lambda a: a * wsum, g)
        want = g if want is None else jax.tree.map(jnp.add, want, g)
    _close(st.tbptt_grad(task, model, p, b, lo, 12, k1, k2), want)


def test_pairs_that_do_not_exist_are_rows_with_the_reason():
    """A pair the code refuses is reported with the refusal (before any compute), and the
    dense RTRL on two element-wise blocks is a stated n/a of the full study."""
    st = _study()
    task = _echo()
    sz = {**st.FULL, "hidden": 3, "echo": {**st.FULL["echo"], "epochs": 1}}
    r = st.run_pair(task, "echo", "lstm", "zucchet", {"every": 10}, sz, [])
    assert "not element-wise" in r["na"]
    assert st.run_pair(task, "echo", "lru", "rtrl", {"every": 10}, sz, [])["na"] == st.TOO_COSTLY_WHY


def test_smoke_run_trains_measures_and_reports(tmp_path):
    """The smoke study's echo part (one minGRU block): every planned row is trained, accuracies
    are accuracies, costs are measured, the exact row's probe agrees with the exact gradient,
    and results.md shows every row."""
    st = _study()
    res = st.main(["--smoke", "--parts", "echo", "--out", str(tmp_path)])
    rows = res["echo"]["cells"]["mingru"]
    assert [r["method"] for r in rows] == ["tbptt_10_8", "zucchet"]
    for r in rows:
        assert all(0.0 <= v <= 1.0 for v in r["test"]["values"]) and len(r["test"]["values"]) == st.SMOKE["seeds"]
        assert r["cost"]["updates_per_s"] > 0 and r["cost"]["xla_bytes"] > 0 and r["cost"]["carried_bytes"] > 0
        assert len(r["cosine"]) == len(res["echo"]["snapshot_epochs"])
    assert all(c > 0.9999 for c in rows[1]["cosine"])       # one element-wise layer: the rule is exact RTRL
    md = (tmp_path / "results.md").read_text()
    assert "| mingru | TBPTT(10, 8) |" in md and "| mingru | Zucchet rule |" in md
    assert json.loads((tmp_path / "results.json").read_text())["mode"] == "smoke"


@pytest.mark.slow
def test_full_study_runs(tmp_path):
    """The whole study at its stated sizes (about 40 minutes on a loaded 2-core CPU)."""
    st = _study()
    res = st.main(["--out", str(tmp_path)])
    for kind in ("copy", "echo"):
        assert set(res[kind]["cells"]) == set(st.FULL["cells"])
