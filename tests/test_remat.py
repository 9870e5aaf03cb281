"""model.remat: activations recomputed in the backward pass (checkpointed segments of
time). The gradients are the same function; only the memory changes."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.models.lstm import lstm_init, lstm_scan
from jaxdl.models.remat import segment_length
from jaxdl.models.rnn import rnn_apply, rnn_apply_last, rnn_carry, rnn_init
from jaxdl.objectives import softmax_xent
from jaxdl.train.tbptt import Batch, make_schedule, make_tbptt


def _model(dtype=jnp.float64):
    params = rnn_init(jax.random.PRNGKey(3), 3, 6, 4, layers=2, dtype=dtype)
    carry = tuple((0.3 * jax.random.normal(jax.random.PRNGKey(10 + i), (2, 6), dtype),
                   jax.random.normal(jax.random.PRNGKey(20 + i), (2, 6), dtype)) for i in range(2))
    return params, carry


@pytest.mark.parametrize("remat,masked", [("sqrt", False), (3, True)])
def test_remat_gradients_identical_every_parameter_and_the_initial_state(x64, remat, masked):
    """Two layers + readout, T=17 (3 does not divide it: a padded last segment), nonzero
    initial (h, c) in both layers, gradients for every parameter and the initial state."""
    params, carry = _model()
    T = 17
    xs = jax.random.normal(jax.random.PRNGKey(4), (T, 2, 3), jnp.float64)
    ys = jax.random.normal(jax.random.PRNGKey(5), (T, 2, 4), jnp.float64)
    mask = jnp.asarray(np.random.default_rng(1).random((T, 2)) > 0.3, jnp.float64) if masked else None

    def loss(q, c, remat):
        out, c2 = rnn_apply(q, xs, c, mask, remat=remat)
        return 0.5 * ((out - ys) ** 2).sum() + sum(jnp.sin(a).sum() for a in jax.tree.leaves(c2))
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    g0, g1 = grad(params, carry, None), grad(params, carry, remat)
    l0, l1 = jax.tree.leaves(g0), jax.tree.leaves(g1)
    assert len(l0) == 2 * 3 + 2 + 2 * 2          # wx, wh, b per layer, readout w, b, (h0, c0) per layer
    for a, b in zip(l1, l0):
        assert float(jnp.abs(b).max()) > 0
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    fwd = jax.jit(lambda q, c, r: rnn_apply(q, xs, c, mask, remat=r), static_argnums=2)
    o0, o1 = fwd(params, carry, None), fwd(params, carry, remat)
    for a, b in zip(jax.tree.leaves(o1), jax.tree.leaves(o0)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_remat_single_layer_and_last_step_readout(x64):
    p = lstm_init(jax.random.PRNGKey(0), 3, 5, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (11, 2, 3), jnp.float64)
    c = (0.5 * jnp.ones((2, 5)), -0.3 * jnp.ones((2, 5)))
    f = lambda p, r: sum(jnp.sum(a ** 2) for a in jax.tree.leaves(lstm_scan(p, xs, c, remat=r)))
    gf = jax.jit(jax.grad(f), static_argnums=1)
    for a, b in zip(jax.tree.leaves(gf(p, "sqrt")), jax.tree.leaves(gf(p, None))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    params, carry = _model()
    g = lambda r: jax.jit(jax.grad(lambda q: rnn_apply_last(q, xs, carry, remat=r)[0].sum()))(params)
    for a, b in zip(jax.tree.leaves(g(4)), jax.tree.leaves(g(None))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def _stream(T, Bn, V=3, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, V, (T, Bn))
    y = np.roll(s, 2, axis=0)
    w = np.ones((T, Bn))
    w[:2] = 0
    return Batch(jnp.asarray(np.eye(V)[s][None]), jnp.asarray(y[None]), jnp.ones((1, T, Bn)), jnp.asarray(w[None]))


@pytest.mark.parametrize("k1,k2", [(4, 10), (9, 4)])
def test_remat_through_the_tbptt_engine_every_update_identical(x64, k1, k2):
    """Several updates (T=37: ragged end, windows before the stream start), Adam, the
    state carried across two batches: every update's gradient and the final parameters
    agree with and without remat."""
    T, Bn, V = 37, 3, 3
    batches = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), _stream(T, Bn, V, 0), _stream(T, Bn, V, 1))
    opt = optax.adam(1e-2)

    def train(remat):
        apply_fn = lambda p, x, c, m: rnn_apply(p, x, c, m, remat=remat)
        eng = make_tbptt(apply_fn, softmax_xent, opt, rnn_carry, make_schedule(T, k1, k2), reset="epoch",
                         collect_grads=True)
        params = rnn_init(jax.random.PRNGKey(0), V, 5, V, dtype=jnp.float64)
        state = eng.fresh_state(params, jax.tree.map(lambda a: a[0], batches))
        p, _, s, out = jax.jit(eng.run_epoch)(params, opt.init(params), state, batches)
        return p, s, out["grads"]
    p0, s0, g0 = train(None)
    p1, s1, g1 = train("sqrt")
    leaves = jax.tree.leaves(g0)
    assert leaves[0].shape[:2] == (2, -(-T // k1))          # [batches, updates] of gradients
    for a, b in zip(jax.tree.leaves((p1, s1, g1)), jax.tree.leaves((p0, s0, g0))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_remat_and_bf16_together():
    params, carry = _model(jnp.float32)
    xs = jax.random.normal(jax.random.PRNGKey(4), (20, 2, 3))
    g = lambda r: jax.tree.leaves(jax.jit(jax.grad(
        lambda q: (rnn_apply(q, xs, carry, compute_dtype="bfloat16", remat=r)[0] ** 2).sum()))(params))
    for a, b in zip(g("sqrt"), g(None)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_remat_stores_sublinear_activations():
    """XLA's own accounting of the compiled gradient: at T=4096 the temporaries with
    sqrt segments are a small fraction of those that store every step."""
    params = rnn_init(jax.random.PRNGKey(0), 4, 64, 4)
    xs = jnp.zeros((4096, 8, 4))

    def temp_bytes(remat):
        f = jax.jit(jax.grad(lambda p: rnn_apply(p, xs, rnn_carry(p, 8), remat=remat)[0].sum()))
        return f.lower(params).compile().memory_analysis().temp_size_in_bytes
    full, sqrt = temp_bytes(None), temp_bytes("sqrt")
    # stored: h, c and four gates per step (6 x 4096 x 8 x 64 x 4 B = 50 MB), plus dz
    assert full > 40e6, full
    assert sqrt < full / 8, (sqrt, full)


def test_segment_length_and_bad_values():
    assert segment_length(100, None) is None and segment_length(100, "none") is None
    assert segment_length(100, "sqrt") == 10 and segment_length(101, "sqrt") == 11
    assert segment_length(10, 25) is None          # one segment: nothing to checkpoint
    assert segment_length(10, 3) == 3
    for bad in ("half", 0, -2, 1.5):
        with pytest.raises(ValueError, match="model.remat=sqrt"):
            segment_length(100, bad)
