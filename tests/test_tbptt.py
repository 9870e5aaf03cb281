"""TBPTT(k1, k2) against a deliberately naive reference written here.

The reference knows nothing of the engine: for each update it runs a plain
per-step LSTM cell from the start of the stream, detaches the state at the window
start (and, for k1 > k2, every k2 steps inside the segment), and takes jax.grad of
the mean loss over that update's new steps. Params are held fixed (set_to_zero),
so every update's gradient is comparable.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.models.cell import cell_of
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.train.tbptt import Batch, loss_steps, make_schedule, make_tbptt, summarize

N_STEPS, B, D, H, O = 23, 2, 3, 4, 2


CELLS = ["lstm", "gru", "rnn"]


def _carry0(cell, key):
    """A nonzero initial state of the cell's shape: (h, c) for the LSTM, (h,) otherwise."""
    n = 2 if cell == "lstm" else 1
    return tuple(0.5 * jax.random.normal(k, (B, H), jnp.float64) for k in jax.random.split(key, n))


def naive_update_loss(params, xs, ys, u, k1, k2, carry0):
    """Mean squared error over update u's new steps, recomputed from step 0 with the cell's
    plain one-step transition (Cell.step), detaching where TBPTT(k1, k2) detaches."""
    n = xs.shape[0]
    new = range(u * k1, min((u + 1) * k1, n))
    if k1 <= k2:
        start = max((u + 1) * k1 - k2, 0)
        detach = {start}
    else:
        start = u * k1
        detach = {start + j * k2 for j in range((k1 + k2 - 1) // k2)}
    p = params["layers"][0]
    cell = cell_of(p)
    carry = carry0
    losses = []
    for t in range(new[-1] + 1):
        if t in detach:
            carry = jax.lax.stop_gradient(carry)
        carry = cell.step(p, carry, xs[t])
        if t in new:
            y = cell.output(carry) @ params["readout"]["w"] + params["readout"]["b"]
            losses.append(((y - ys[t]) ** 2).mean(-1))
    return jnp.stack(losses).mean()


def _mse(preds, y):
    return {"loss": ((preds - y) ** 2).mean(-1)}


def _stream(cell="lstm"):
    key = jax.random.PRNGKey(7)
    params = rnn_init(key, D, H, O, cell=cell, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(8), (N_STEPS, B, D), jnp.float64)
    ys = jax.random.normal(jax.random.PRNGKey(9), (N_STEPS, B, O), jnp.float64)
    return params, xs, ys


def _engine_grads(params, xs, ys, k1, k2, carry0):
    T = xs.shape[0]
    eng = make_tbptt(lambda p, x, c, m: rnn_apply(p, x, c, m), _mse, optax.set_to_zero(),
                     rnn_carry, make_schedule(T, k1, k2), reset="never", collect_grads=True)
    ones = jnp.ones((T, B), xs.dtype)
    batch = Batch(xs, ys, ones, ones)
    carry, tail = eng.fresh_state(params, batch)
    batches = jax.tree.map(lambda a: a[None], batch)
    _, _, _, out = jax.jit(eng.run_epoch)(params, optax.set_to_zero().init(params),
                                          (carry0, tail), batches)
    return eng, out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k1,k2", [(5, 5), (3, 7), (1, 4), (2, 3), (7, 3), (6, 1), (4, 10)])
def test_every_update_matches_naive_reference(x64, k1, k2, cell):
    """Every cell through the engine, every (k1, k2) configuration, nonzero initial state."""
    params, xs, ys = _stream(cell)
    carry0 = _carry0(cell, jax.random.PRNGKey(1))
    eng, out = _engine_grads(params, xs, ys, k1, k2, (carry0,))
    U = eng.schedule.updates
    assert U == -(-N_STEPS // k1)
    assert k1 == 1 or N_STEPS % k1 != 0  # a ragged end
    ref_grad = jax.grad(naive_update_loss)   # eager: one compile per update would cost more than it saves
    for u in range(U):
        g_ref = ref_grad(params, xs, ys, u, k1, k2, carry0)
        g_eng = jax.tree.map(lambda a: a[0, u], out["grads"])
        for a, b in zip(jax.tree.leaves(g_eng), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"update {u}")


@pytest.mark.parametrize("cell", CELLS)
def test_full_bptt_equals_whole_sequence_grad(x64, cell):
    """TBPTT(n, n) is one update whose gradient is jax.grad of the whole-sequence loss."""
    params, xs, ys = _stream(cell)
    carry0 = (_carry0(cell, jax.random.PRNGKey(3)),)
    eng, out = _engine_grads(params, xs, ys, N_STEPS, N_STEPS, carry0)
    assert eng.schedule.updates == 1

    def whole(p):
        preds, _ = rnn_apply(p, xs, carry0)
        return ((preds - ys) ** 2).mean()
    g = jax.grad(whole)(params)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda a: a[0, 0], out["grads"])), jax.tree.leaves(g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("k1,k2", [(5, 5), (3, 7), (7, 3), (1, 1), (4, 9)])
def test_each_step_counted_once(k1, k2):
    """A 'model' that outputs its input: the summed loss over an epoch is the sum of
    every step's value exactly once, and the weight count is n * B."""
    n = 23
    xs = jnp.arange(n, dtype=jnp.float32)[:, None, None] * jnp.ones((1, B, 1)) + 1.0
    ones = jnp.ones((n, B))
    batch = Batch(xs, xs, ones, ones)
    eng = make_tbptt(lambda p, x, c, m: (x[..., 0], c), lambda pr, y: {"loss": pr},
                     optax.sgd(0.0), lambda p, b: jnp.zeros(()), make_schedule(n, k1, k2))
    state = eng.fresh_state({}, batch)
    _, _, _, out = eng.run_epoch({}, optax.sgd(0.0).init({}), state, jax.tree.map(lambda a: a[None], batch))
    assert float(out["weight"].sum()) == n * B
    assert float(out["sums"]["loss"].sum()) == B * sum(range(1, n + 1))
    per_update = [set(r) for r in loss_steps(n, k1, k2)]
    assert sorted(s for r in per_update for s in r) == list(range(n))
    np.testing.assert_allclose(np.asarray(out["weight"][0]), [B * len(r) for r in per_update])


def test_stream_in_batches_is_exact_across_boundaries(x64):
    """Feeding the stream in consecutive batches (reset='epoch') gives the same
    updates as one batch holding the whole stream, for k1 < k2."""
    params, xs, ys = _stream()
    xs, ys = xs[:20], ys[:20]
    k1, k2 = 2, 5
    ones = jnp.ones((20, B))
    one = Batch(xs, ys, ones, ones)
    opt = optax.sgd(0.1)
    mk = lambda T: make_tbptt(lambda p, x, c, m: rnn_apply(p, x, c, m), _mse, opt, rnn_carry,
                              make_schedule(T, k1, k2), reset="epoch", collect_grads=True)
    e1, e2 = mk(20), mk(10)
    p1, _, _, o1 = e1.run_epoch(params, opt.init(params), e1.fresh_state(params, one),
                                jax.tree.map(lambda a: a[None], one))
    two = jax.tree.map(lambda a: a.reshape(2, 10, *a.shape[1:]), one)
    p2, _, _, o2 = e2.run_epoch(params, opt.init(params), e2.fresh_state(params, one), two)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(summarize(o1)["loss"], summarize(o2)["loss"], rtol=1e-12)
