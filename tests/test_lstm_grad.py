"""The LSTM's hand-written backward pass against autodiff and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl.models.products as products
from jaxdl.gradcheck import gradient_check
from jaxdl.models.lstm import lstm_init, lstm_scan, lstm_scan_reference
from jaxdl.models.rnn import rnn_apply, rnn_apply_last, rnn_carry, rnn_init


def _setup(T=5, B=3, D=4, H=6, dtype=jnp.float64):
    ks = jax.random.split(jax.random.PRNGKey(0), 6)
    p = lstm_init(ks[0], D, H, dtype=dtype)
    # perturb the bias so no gate sits exactly at its init value
    p = p._replace(b=p.b + 0.3 * jax.random.normal(ks[5], p.b.shape, dtype))
    xs = jax.random.normal(ks[1], (T, B, D), dtype)
    h0 = 0.5 * jax.random.normal(ks[2], (B, H), dtype)
    c0 = jax.random.normal(ks[3], (B, H), dtype)
    w = jax.random.normal(ks[4], (T, B, H), dtype)
    return p, xs, (h0, c0), w


@pytest.fixture(params=["rows_left", "weight_left"])
def form(request, monkeypatch):
    """Both forms of the per-step recurrent products (jaxdl.models.products.weight_left):
    the size from which the CPU runs them weight-left set to 1 (every size) or out of reach."""
    monkeypatch.setattr(products, "WEIGHT_LEFT_MIN", 1 if request.param == "weight_left" else 1 << 30)
    return request.param


def _loss(scan, w, mask=None, hoist=None):
    def f(p, xs, carry):
        kw = {} if scan is lstm_scan_reference else {"hoist": hoist}
        hs, (h, c) = scan(p, xs, carry, mask, **kw)
        # every output step, and both final carries, enter the loss
        return (hs * w).sum() + 0.3 * (h ** 2).sum() + 0.7 * jnp.sin(c).sum()
    return f


@pytest.mark.parametrize("hoist", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_custom_vjp_matches_autodiff(x64, form, hoist, masked):
    p, xs, carry, w = _setup(T=7)
    mask = None
    if masked:
        mask = jnp.asarray(np.random.default_rng(0).random((7, 3)) > 0.3, jnp.float64)
    grad = jax.grad(_loss(lstm_scan, w, mask, hoist), argnums=(0, 1, 2))
    ours = grad(p, xs, carry)
    # the form under test is the one traced (its transposes sit behind optimization barriers)
    assert ("optimization_barrier" in str(jax.make_jaxpr(grad)(p, xs, carry))) == (form == "weight_left")
    ref = jax.grad(_loss(lstm_scan_reference, w, mask), argnums=(0, 1, 2))(p, xs, carry)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # and the forward pass is the same function
    o1 = lstm_scan(p, xs, carry, mask, hoist=hoist)
    o2 = lstm_scan_reference(p, xs, carry, mask)
    for a, b in zip(jax.tree.leaves(o1), jax.tree.leaves(o2)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_lstm_finite_differences_every_parameter(x64, form):
    """式6 on every parameter element, T=6 steps, nonzero initial (h, c),
    gradient also flowing into the initial state."""
    p, xs, carry, w = _setup(T=6, B=2, D=3, H=4)
    f = _loss(lstm_scan, w)
    errs = gradient_check(lambda q: f(q["lstm"], xs, q["carry"]), {"lstm": p, "carry": carry})
    assert len(errs) == 5  # wx, wh, b, h0, c0
    assert max(errs.values()) < 1e-6, errs


def test_masked_step_holds_state(x64):
    p, xs, carry, _ = _setup(T=4)
    mask = jnp.ones((4, 3)).at[2].set(0.0)
    hs, _ = lstm_scan(p, xs, carry, mask)
    np.testing.assert_array_equal(hs[2], hs[1])
    assert not np.allclose(hs[3], hs[2])


def test_stacked_rnn_finite_differences(x64):
    """Two layers plus a readout, through several steps, with nonzero state."""
    key = jax.random.PRNGKey(3)
    params = rnn_init(key, 3, 4, 2, layers=2, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(4), (5, 2, 3), jnp.float64)
    carry = tuple((0.3 * jax.random.normal(jax.random.PRNGKey(10 + i), (2, 4), jnp.float64),
                   jax.random.normal(jax.random.PRNGKey(20 + i), (2, 4), jnp.float64)) for i in range(2))
    ys = jax.random.normal(jax.random.PRNGKey(5), (5, 2, 2), jnp.float64)

    def loss(q):
        out, _ = rnn_apply(q, xs, carry)
        return 0.5 * ((out - ys) ** 2).sum()
    errs = gradient_check(loss, params)
    assert len(errs) == 2 * 3 + 2
    assert max(errs.values()) < 1e-6, errs


def test_wrong_feature_count_is_a_clear_error():
    p = lstm_init(jax.random.PRNGKey(0), 3, 4)
    with pytest.raises(ValueError, match="features"):
        lstm_scan(p, jnp.zeros((5, 2, 2)), (jnp.zeros((2, 4)), jnp.zeros((2, 4))))
    with pytest.raises(ValueError, match="batch size"):
        lstm_scan(p, jnp.zeros((5, 2, 3)), (jnp.zeros((1, 4)), jnp.zeros((1, 4))))


def test_last_step_readout_equals_every_step_readout_at_the_end():
    params = rnn_init(jax.random.PRNGKey(0), 3, 5, 4, layers=2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (6, 2, 3))
    every, c1 = rnn_apply(params, xs, rnn_carry(params, 2))
    last, c2 = rnn_apply_last(params, xs, rnn_carry(params, 2))
    np.testing.assert_allclose(last, every[-1], rtol=1e-6)
    # with a mask, the readout sees the state after each sequence's last real step
    mask = jnp.ones((6, 2)).at[4:, 1].set(0.0)
    last_m, _ = rnn_apply_last(params, xs, rnn_carry(params, 2), mask)
    short, _ = rnn_apply(params, xs[:4, 1:], rnn_carry(params, 1))
    np.testing.assert_allclose(last_m[1], short[-1, 0], rtol=1e-5)
    np.testing.assert_allclose(last_m[0], every[-1, 0], rtol=1e-6)


def test_weight_left_form_is_chosen_by_hidden_size():
    """On the CPU the per-step products run weight-left from WEIGHT_LEFT_MIN units, judged by
    H for both the forward's [H, 4H] and the backward's [4H, H] weight (not by 4H)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the weight-left form is a CPU rule")
    for H, want in ((64, False), (128, False), (255, False), (256, True), (1024, True)):
        assert products.weight_left(H, 4 * H) is want and products.weight_left(4 * H, H) is want, H
