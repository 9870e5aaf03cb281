"""The recurrent cells (GRU, Elman RNN, and the LSTM through the same interface):
式6 finite differences, the fast scan against autodiff of the reference, equality
with torch.nn.GRU / nn.RNN / nn.LSTM, the stack (remat, bf16), the registry, and the
Keras-style layers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.gradcheck import gradient_check
from jaxdl.models.cell import cells, get_cell
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.workflow import GRU, LSTM, Dense, RepeatVector, SimpleRNN, Sequential

CELLS = ["gru", "rnn", "lstm"]


def _setup(name, T=5, B=3, D=4, H=5, dtype=jnp.float64, seed=0):
    """Params with every bias perturbed off its init (zero) value, inputs, a nonzero
    initial carry, output weights, and a mask that holds some (step, sample) pairs."""
    cell = get_cell(name)
    ks = jax.random.split(jax.random.PRNGKey(seed), 6)
    p = cell.init(ks[0], D, H, dtype)
    p = type(p)(*(a + 0.3 * jax.random.normal(k, a.shape, dtype) for a, k in zip(p, jax.random.split(ks[5], len(p)))))
    xs = jax.random.normal(ks[1], (T, B, D), dtype)
    carry = tuple(0.5 * jax.random.normal(k, (B, H), dtype)
                  for k in jax.random.split(ks[2], len(cell.carry(p, B))))
    w = jax.random.normal(ks[3], (T, B, H), dtype)
    mask = jnp.ones((T, B), dtype).at[1, 0].set(0).at[2, 1].set(0).at[3, 0].set(0)
    return cell, p, xs, carry, w, mask


def _loss(run, w):
    """Every output step and every final carry entry enter the loss."""
    def f(p, xs, carry):
        hs, c = run(p, xs, carry)
        return (hs * w).sum() + sum(0.3 * jnp.sin(k).sum() for k in c)
    return f


# ---- the registry -----------------------------------------------------------------

def test_registry_finds_every_cell_with_its_layout():
    found = cells()
    assert {"gru", "rnn", "lstm"} <= set(found)
    for name, G in [("gru", 3), ("rnn", 1), ("lstm", 4)]:
        c = found[name]
        assert c.name == name and c.gates == G
        p = c.init(jax.random.PRNGKey(0), 3, 5)
        assert isinstance(p, c.params)
        assert p.wh.shape == (5, G * 5)                      # the recurrent weight leaf is wh [H, G*H]
        assert all(leaf.shape[-1] == G * 5 for leaf in p)    # every leaf's last axis is G*H
    assert found["gru"].options == () and found["rnn"].options == ()


def test_unknown_cell_or_option_is_refused():
    with pytest.raises(ValueError, match=r"forget_bias.*"):
        rnn_init(jax.random.PRNGKey(0), 3, 4, 2, cell="gru", forget_bias=1.0)
    with pytest.raises(ValueError, match=r"forget_bias"):
        rnn_init(jax.random.PRNGKey(0), 3, 4, 2, cell="rnn", forget_bias=1.0)
    with pytest.raises(ValueError, match=r"unknown cell 'elmann'.*gru.*lstm.*rnn"):
        rnn_init(jax.random.PRNGKey(0), 3, 4, 2, cell="elmann")


def test_init_is_keras_like():
    """glorot-uniform wx, orthogonal H x H blocks of wh, zero biases."""
    H = 6
    for name in ("gru", "rnn"):
        c = get_cell(name)
        p = c.init(jax.random.PRNGKey(1), 4, H)
        for g in range(c.gates):
            blk = np.asarray(p.wh[:, g * H:(g + 1) * H])
            np.testing.assert_allclose(blk.T @ blk, np.eye(H), atol=1e-5)
        limit = np.sqrt(6 / (4 + c.gates * H))
        assert np.abs(np.asarray(p.wx)).max() <= limit and np.asarray(p.wx).std() > 0.3 * limit
        for leaf in p[2:]:
            assert not np.asarray(leaf).any()


# ---- gradients --------------------------------------------------------------------

@pytest.mark.parametrize("name", CELLS)
def test_finite_differences_every_parameter_and_initial_state(x64, name):
    """式6 on every element of every parameter and of the initial carry, T=4 steps,
    nonzero initial state, a mask that holds some steps, through the fast scan."""
    cell, p, xs, carry, w, mask = _setup(name, T=4, B=2, D=2, H=3)
    f = _loss(lambda q, x, c: cell.scan(q, x, c, mask), w)
    errs = gradient_check(lambda q: f(q["params"], xs, q["carry"]), {"params": p, "carry": carry})
    assert len(errs) == len(p) + len(carry)
    assert max(errs.values()) < 1e-6, errs


@pytest.mark.parametrize("hoist", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", CELLS)
def test_fast_scan_gradients_equal_autodiff_of_reference(x64, name, hoist, masked):
    cell, p, xs, carry, w, mask = _setup(name, T=6)
    m = mask if masked else None
    fast = _loss(lambda q, x, c: cell.scan(q, x, c, m, hoist), w)
    ref = _loss(lambda q, x, c: cell.reference(q, x, c, m), w)
    g1 = jax.grad(fast, argnums=(0, 1, 2))(p, xs, carry)
    g2 = jax.grad(ref, argnums=(0, 1, 2))(p, xs, carry)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(jax.tree.leaves(cell.scan(p, xs, carry, m, hoist)),
                    jax.tree.leaves(cell.reference(p, xs, carry, m))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["gru", "rnn"])
def test_masked_steps_hold_the_state(x64, name):
    cell, p, xs, carry, _, mask = _setup(name)
    hs, _ = cell.scan(p, xs, carry, mask)
    np.testing.assert_array_equal(hs[1, 0], hs[0, 0])          # held at (1, 0)
    np.testing.assert_array_equal(hs[2, 1], hs[1, 1])          # held at (2, 1)
    assert not np.allclose(hs[1, 1], hs[0, 1])                 # sample 1 moved on at step 1
    all_held, (hT,) = cell.scan(p, xs, carry, jnp.zeros_like(mask))
    np.testing.assert_array_equal(hT, carry[0])


@pytest.mark.parametrize("name", CELLS)
def test_step_computes_the_recurrent_product_only_through_rec(x64, name):
    """step with rec = zero recurrent product equals step with wh = 0, and then nothing
    depends on wh; with the default rec, a scan of step equals the fast scan."""
    cell, p, xs, carry, _, _ = _setup(name)
    zero_rec = lambda h, w: jnp.zeros((h.shape[0], w.shape[1]), h.dtype)
    a = cell.step(p, carry, xs[0], zero_rec)
    b = cell.step(p._replace(wh=jnp.zeros_like(p.wh)), carry, xs[0])
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-14)
    g = jax.grad(lambda wh: sum(k.sum() for k in cell.step(p._replace(wh=wh), carry, xs[0], zero_rec)))(p.wh)
    assert not np.asarray(g).any()
    c = carry
    for t in range(xs.shape[0]):
        c = cell.step(p, c, xs[t])
    _, cT = cell.scan(p, xs, carry)
    for u, v in zip(c, cT):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_bad_input_is_a_clear_error():
    for name in ("gru", "rnn"):
        c = get_cell(name)
        p = c.init(jax.random.PRNGKey(0), 3, 4)
        with pytest.raises(ValueError, match="features"):
            c.scan(p, jnp.zeros((5, 2, 2)), c.carry(p, 2))
        with pytest.raises(ValueError, match="batch size"):
            c.scan(p, jnp.zeros((5, 2, 3)), c.carry(p, 1))
        with pytest.raises(ValueError, match=r"1-tuple \(h,\)"):
            c.scan(p, jnp.zeros((5, 2, 3)), (jnp.zeros((2, 4)), jnp.zeros((2, 4))))
        with pytest.raises(ValueError, match="mask"):
            c.scan(p, jnp.zeros((5, 2, 3)), c.carry(p, 2), jnp.ones((5, 3)))


# ---- equality with PyTorch ---------------------------------------------------------

def _torch_module(name, D, H):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = {"gru": lambda: torch.nn.GRU(D, H), "rnn": lambda: torch.nn.RNN(D, H, nonlinearity="tanh"),
           "lstm": lambda: torch.nn.LSTM(D, H)}[name]().double()
    with torch.no_grad():
        for prm in net.parameters():                    # biases well away from zero too
            prm.copy_(0.5 * torch.randn_like(prm))
    return torch, net


def _from_torch(name, net):
    """jaxdl params from torch's layer-0 weights (weight_ih [G*H, D] -> wx [D, G*H], same
    gate order: r, z, n for the GRU, i, f, g, o for the LSTM)."""
    t = lambda a: jnp.asarray(a.detach().numpy())
    wx, wh = t(net.weight_ih_l0).T, t(net.weight_hh_l0).T
    bi, bh = t(net.bias_ih_l0), t(net.bias_hh_l0)
    if name == "gru":
        return get_cell("gru").params(wx, wh, bi, bh)
    return get_cell(name).params(wx, wh, bi + bh)


@pytest.mark.parametrize("name", CELLS)
def test_equals_torch_outputs_and_every_gradient(x64, name):
    T, B, D, H = 6, 3, 4, 5
    torch, net = _torch_module(name, D, H)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, D))
    h0 = [0.5 * rng.standard_normal((B, H)) for _ in range(2 if name == "lstm" else 1)]
    w = rng.standard_normal((T, B, H))
    v = rng.standard_normal((B, H))

    xt = torch.tensor(x, requires_grad=True)
    h0t = [torch.tensor(h[None], requires_grad=True) for h in h0]
    out, hN = net(xt, tuple(h0t) if name == "lstm" else h0t[0])
    hNt = hN[0] if name == "lstm" else hN
    (out * torch.from_numpy(w)).sum().add((hNt[0] * torch.from_numpy(v)).sum()).backward()

    cell, p = get_cell(name), _from_torch(name, net)

    def f(p, xs, carry):
        hs, c = cell.scan(p, xs, carry)
        return (hs * w).sum() + (c[0] * v).sum(), hs
    (_, hs), (gp, gx, gc) = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(
        p, jnp.asarray(x), tuple(map(jnp.asarray, h0)))
    np.testing.assert_allclose(hs, out.detach().numpy(), rtol=1e-12, atol=1e-13)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    close(gp.wx, net.weight_ih_l0.grad.numpy().T)
    close(gp.wh, net.weight_hh_l0.grad.numpy().T)
    if name == "gru":
        close(gp.bx, net.bias_ih_l0.grad.numpy())
        close(gp.bh, net.bias_hh_l0.grad.numpy())
    else:     # torch's two biases are summed into b: each has b's gradient
        close(gp.b, net.bias_ih_l0.grad.numpy())
        close(gp.b, net.bias_hh_l0.grad.numpy())
    close(gx, xt.grad.numpy())
    for a, b in zip(gc, h0t):
        close(a, b.grad.numpy()[0])


# ---- the stack ---------------------------------------------------------------------

def _stack_setup(name, T=9, B=2, D=3, H=4, O=2, dtype=jnp.float64):
    params = rnn_init(jax.random.PRNGKey(3), D, H, O, layers=2, cell=name, dtype=dtype)
    xs = jax.random.normal(jax.random.PRNGKey(4), (T, B, D), dtype)
    carry = jax.tree.map(lambda z: 0.5 + z, rnn_carry(params, B))        # nonzero state
    ys = jax.random.normal(jax.random.PRNGKey(5), (T, B, O), dtype)
    return params, xs, carry, ys


@pytest.mark.parametrize("name", ["gru", "rnn"])
def test_stacked_layers_finite_differences(x64, name):
    params, xs, carry, ys = _stack_setup(name, T=4, H=3)

    def loss(q):
        out, _ = rnn_apply(q, xs, carry)
        return 0.5 * ((out - ys) ** 2).sum()
    errs = gradient_check(loss, params)
    assert len(errs) == 2 * len(params["layers"][0]) + 2
    assert max(errs.values()) < 1e-6, errs


@pytest.mark.parametrize("name", ["gru", "rnn"])
def test_stacked_remat_equals_no_remat(x64, name):
    params, xs, carry, ys = _stack_setup(name)
    mask = jnp.ones(xs.shape[:2]).at[4, 1].set(0)

    def loss(q, remat):
        out, c = rnn_apply(q, xs, carry, mask, remat=remat)
        return 0.5 * ((out - ys) ** 2).sum() + sum(jnp.sum(k) for k in jax.tree.leaves(c))
    (l1, g1), (l2, g2) = (jax.value_and_grad(loss)(params, r) for r in (None, "sqrt"))
    np.testing.assert_allclose(l1, l2, rtol=1e-13)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["gru", "rnn"])
def test_stacked_bfloat16_runs_close_to_float32(name):
    params, xs, carry, ys = _stack_setup(name, T=6, H=16, dtype=jnp.float32)

    def loss(q, cd):
        out, _ = rnn_apply(q, xs, carry, compute_dtype=cd)
        return 0.5 * ((out - ys) ** 2).mean(), out
    (l32, o32), g32 = jax.value_and_grad(loss, has_aux=True)(params, None)
    (l16, o16), g16 = jax.value_and_grad(loss, has_aux=True)(params, "bfloat16")
    assert o16.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
    np.testing.assert_allclose(o16, o32, atol=5e-2)
    assert not np.array_equal(o16, o32)                   # the bf16 path did round something
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        assert np.linalg.norm(a - b) <= 0.05 * np.linalg.norm(b) + 1e-6


# ---- Keras-style layers ------------------------------------------------------------

LAYERS = {"gru": GRU, "rnn": SimpleRNN}


@pytest.mark.parametrize("name", ["gru", "rnn"])
def test_sequential_fits_a_tiny_problem(name):
    """y = the mean of the sequence: the loss falls well below the first epoch's."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 6, 1)).astype(np.float32)
    y = x.mean(axis=1)
    c = Sequential([LAYERS[name](12), Dense(1)], input_shape=(6, 1)).compile("adam", "mse", lr=1e-2)
    ts = c.init(jax.random.PRNGKey(0))
    assert isinstance(ts.params[0], get_cell(name).params)
    before = c.evaluate(ts, x, y)["loss"]
    ts, hist = c.fit(ts, x, y, batch_size=16, epochs=20, verbose=0)
    assert hist["loss"][-1] < 0.2 * hist["loss"][0]
    assert c.evaluate(ts, x, y)["loss"] < 0.2 * before


@pytest.mark.parametrize("name", ["gru", "rnn"])
def test_stateful_predict_carries_state(name):
    """Stateful pieces equal the whole sequence; a second call without reset differs."""
    rng = np.random.default_rng(2)
    seq = rng.standard_normal((1, 12, 2)).astype(np.float32)
    layer = LAYERS[name]
    whole = Sequential([layer(5, return_sequences=True), Dense(2)], batch_input_shape=(1, 12, 2)).compile()
    parts = Sequential([layer(5, return_sequences=True, stateful=True), Dense(2)],
                       batch_input_shape=(1, 4, 2)).compile()
    ts = whole.init(jax.random.PRNGKey(0))
    ref = whole.predict(ts, seq, batch_size=1)
    tp = parts.init(jax.random.PRNGKey(0))
    assert len(tp.state[0]) == 1                                # the carry is (h,)
    outs = []
    for i in range(3):
        o, tp = parts.predict(tp, seq[:, 4 * i:4 * (i + 1)], batch_size=1, return_state=True)
        outs.append(o)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), ref, rtol=1e-5, atol=1e-6)
    again = parts.predict(tp, seq[:, :4], batch_size=1)
    fresh = parts.predict(parts.reset_states(tp), seq[:, :4], batch_size=1)
    np.testing.assert_allclose(fresh, outs[0], rtol=1e-6)
    assert not np.allclose(again, fresh)


def test_recurrent_layers_mix_and_mask_in_sequential():
    """An encoder GRU, a SimpleRNN decoder: the mask stops at the encoder's last step;
    padded steps do not change the encoder's summary."""
    m = Sequential([GRU(6), RepeatVector(3), SimpleRNN(5, return_sequences=True), Dense(2)],
                   input_shape=(7, 2)).compile()
    ts = m.init(jax.random.PRNGKey(0))
    x = np.random.default_rng(3).standard_normal((2, 7, 2)).astype(np.float32)
    assert m.predict(ts, x).shape == (2, 3, 2)
    mask = np.ones((2, 7), np.float32)
    mask[0, 5:] = 0
    padded = x.copy()
    padded[0, 5:] = 9.0
    np.testing.assert_allclose(m.predict(ts, padded, mask=mask)[0], m.predict(ts, x, mask=mask)[0], rtol=1e-6)
    short = Sequential(list(m.model.layers), input_shape=(5, 2)).compile()
    np.testing.assert_allclose(m.predict(ts, x, mask=mask)[0], short.predict(ts, x[:1, :5])[0], rtol=1e-5)


def test_layers_refuse_what_they_do_not_implement():
    with pytest.raises(ValueError, match="reset_after=True"):
        GRU(4, reset_after=False)
    with pytest.raises(ValueError, match="activation='tanh'"):
        SimpleRNN(4, activation="relu")
    with pytest.raises(ValueError, match="units"):
        GRU(0)
    with pytest.raises(ValueError, match="batch_input_shape"):
        Sequential([SimpleRNN(3, stateful=True), Dense(1)], input_shape=(4, 1))
    assert LSTM(3).cell == "lstm" and GRU(3).cell == "gru" and SimpleRNN(3).cell == "rnn"
