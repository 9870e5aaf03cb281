"""The causal depthwise convolution before a block's recurrence (`model.conv`,
jaxdl.models.causal_conv) in float64: x' against a numpy shift register, the fast scan (both
forms, with and without masks) against the plain reference scan of the step, gradients against
autodiff of the reference and 式6 finite differences on every parameter and every carry entry
(the buffer included), two windows against one, exact RTRL against full BPTT, the rule of
Zucchet et al. on two conv blocks, and the refusals."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.gradcheck import gradient_check
from jaxdl.models.block import BLOCKS
from jaxdl.models.causal_conv import ConvParams, conv_all
from jaxdl.models.cell import cell_of
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.objectives import get_objective
from tests.helpers import held_stream, online_gradient, perturbed

XENT = get_objective("xent")
K = 3


def _setup(inner="mingru", block="glu", T=7, B=2, D=3, H=4, seed=0):
    """A conv block (params perturbed off their init), inputs, a NONZERO initial carry (the
    buffer too) and a mask that holds steps: at the start, two in a row, and one late."""
    cell = BLOCKS[block]
    ks = jax.random.split(jax.random.PRNGKey(seed), 4)
    p = perturbed(cell.init(ks[0], D, H, jnp.float64, inner=inner, conv=K), seed + 1)
    xs = jax.random.normal(ks[1], (T, B, D), jnp.float64)
    carry = tuple(0.5 * jax.random.normal(k, a.shape, jnp.float64)
                  for k, a in zip(jax.random.split(ks[2], 8), cell.carry(p, B)))
    mask = jnp.ones((T, B), jnp.float64).at[0, 1].set(0).at[2, 0].set(0).at[3, 0].set(0).at[T - 2, 1].set(0)
    return cell, p, xs, carry, mask


def _conv_numpy(w, b, xs, buf, mask):
    """x'_t = sum_j w_j x_{t-j} + b over the real steps only: a shift register of the last
    K - 1 real inputs (oldest first) that a held step leaves alone."""
    w, b, xs = np.asarray(w), np.asarray(b), np.asarray(xs)
    T, B, _ = xs.shape
    reg = [[np.asarray(a[i]) for a in buf] for i in range(B)]
    out = np.zeros_like(xs)
    for t in range(T):
        for i in range(B):
            hist = reg[i] + [xs[t, i]]                          # x_{t-K+1} .. x_t
            out[t, i] = b + sum(w[j] * hist[-1 - j] for j in range(len(w)))
            if mask is None or mask[t, i]:
                reg[i] = hist[1:]
    return out, [np.stack([reg[i][j] for i in range(B)]) for j in range(len(w) - 1)]


def test_conv_equals_a_numpy_shift_register(x64):
    _, p, xs, carry, mask = _setup()
    conv = p.cell
    assert isinstance(conv, ConvParams) and conv.w.shape == (K, 3)
    buf = carry[-(K - 1):]
    for m in (None, mask):
        got, got_buf = jax.jit(conv_all)(conv, xs, buf, m)
        want, want_buf = _conv_numpy(conv.w, conv.b, xs, buf, m)
        real = np.ones(xs.shape[:2], bool) if m is None else np.asarray(m) != 0
        np.testing.assert_allclose(np.asarray(got)[real], want[real], rtol=1e-13, atol=1e-13)   # held steps unread
        for a, b in zip(got_buf, want_buf):
            np.testing.assert_allclose(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("inner,block", [("mingru", "glu"), pytest.param("lru", "mlp", marks=pytest.mark.slow)])
def test_scan_equals_reference_with_carry_and_masks_in_both_forms(x64, inner, block):
    """Outputs and the whole final carry (the buffer included), 1e-12; a held step holds the
    output, the state and the buffer; an all-held window changes nothing."""
    cell, p, xs, carry, mask = _setup(inner, block)
    for m in (None, mask):
        hr, cr = cell.reference(p, xs, carry, m)
        for form in ("sequential", "parallel"):
            hs, cs = cell.scan(p, xs, carry, m, form=form)
            np.testing.assert_allclose(hs, hr, rtol=1e-12, atol=1e-12)
            assert len(cs) == len(cr) == len(cell.carry(p, 2))
            for a, b in zip(cs, cr):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    hs, _ = cell.scan(p, xs, carry, mask)
    np.testing.assert_array_equal(hs[3, 0], hs[1, 0])                   # held at (2, 0) and (3, 0)
    np.testing.assert_array_equal(hs[0, 1], carry[0][1])                # held at (0, 1): the carry's y
    _, held = cell.scan(p, xs, carry, jnp.zeros_like(mask))
    for a, b in zip(held, carry):
        np.testing.assert_array_equal(a, b)


def test_two_windows_equal_one(x64):
    """The buffer carries the last inputs across the window boundary (a held step at the cut)."""
    cell, p, xs, carry, mask = _setup()
    hs, cT = cell.scan(p, xs, carry, mask)
    h1, c1 = cell.scan(p, xs[:3], carry, mask[:3])
    h2, c2 = cell.scan(p, xs[3:], c1, mask[3:])
    np.testing.assert_allclose(jnp.concatenate([h1, h2]), hs, rtol=1e-12, atol=1e-13)
    for a, b in zip(c2, cT):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    # and the buffer matters: a window started from a zero buffer differs
    zero_buf = c1[:-(K - 1)] + tuple(jnp.zeros_like(a) for a in c1[-(K - 1):])
    h3, _ = cell.scan(p, xs[3:], zero_buf, mask[3:])
    assert float(jnp.abs(h3 - h2).max()) > 1e-3


def _loss(run, w):
    def f(p, xs, carry):
        hs, c = run(p, xs, carry)
        return (hs * w).sum() + sum(0.3 * jnp.sin(k).sum() for k in c)
    return f


@pytest.mark.parametrize("form", ["sequential", pytest.param("parallel", marks=pytest.mark.slow)])
def test_gradients_equal_autodiff_of_the_reference(x64, form):
    """Every gradient (params with the conv's w and b, inputs, the initial carry with the
    buffer) of the fast scan against autodiff of the reference, 1e-10."""
    cell, p, xs, carry, mask = _setup()
    w = jax.random.normal(jax.random.PRNGKey(9), (7, 2, 4), jnp.float64)
    g_ref = jax.grad(_loss(lambda q, x, c: cell.reference(q, x, c, mask), w), argnums=(0, 1, 2))(p, xs, carry)
    g = jax.grad(_loss(lambda q, x, c: cell.scan(q, x, c, mask, form=form), w), argnums=(0, 1, 2))(p, xs, carry)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert float(jnp.abs(g[0].cell.w).min()) > 0 and float(jnp.abs(g[2][-1]).max()) > 1e-3   # conv and buffer


@pytest.mark.slow
def test_finite_differences_every_parameter_and_carry_entry(x64):
    """式6 on every element of every parameter (the conv's included) and of the initial
    carry (y, the state, the buffer), through the fast scan, several steps, held steps."""
    cell, p, xs, carry, mask = _setup(T=5, H=3)
    w = jax.random.normal(jax.random.PRNGKey(9), (5, 2, 3), jnp.float64)
    f = _loss(lambda q, x, c: cell.scan(q, x, c, mask), w)
    errs = gradient_check(lambda q: f(q["params"], xs, q["carry"]), {"params": p, "carry": carry})
    assert len(errs) == len(jax.tree.leaves(p)) + len(carry) and len(carry) == 2 + K - 1
    assert max(errs.values()) < 1e-6, errs


def _problem(layers, T=6, B=2, D=3, H=4, O=3, key=0):
    """A stack of GLU minGRU conv blocks (params perturbed), a stream with a held step and a
    NONZERO initial carry (buffers included)."""
    params = perturbed(rnn_init(jax.random.PRNGKey(key), D, H, O, layers, "mingru", dtype=jnp.float64,
                                block="glu", conv=K), 50 + key)
    data, carry0 = held_stream(100 + key, T, B, D, O, rnn_carry(params, B), jnp.float64)
    return params, data, carry0


def _bptt_grad(params, data, carry0):
    xs, ys, w, mask = data
    return jax.grad(lambda p: (XENT(rnn_apply(p, xs, carry0, mask, form="parallel")[0], ys)["loss"] * w).sum())(
        params)


def test_rtrl_on_one_conv_block_equals_full_bptt(x64):
    """Exact: every leaf, the conv's w and b through their DENSE influence [k, H, *shape],
    equals jax.grad of the whole-stream loss, 1e-10, nonzero initial state and buffer. Both
    ways to the DENSE Jacobian run: w [3, 3] by k H = 4 vjps, b [3] by 3 jvps."""
    H = 4
    params, data, carry0 = _problem(1, H=H)
    want = _bptt_grad(params, data, carry0)
    got, st = jax.jit(lambda p: online_gradient("rtrl", p, data, carry0))(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert float(jnp.abs(b).max()) > 1e-4
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    conv = params["layers"][0].cell
    shapes = [m.shape for m in st["M"][0]]
    assert shapes[-2:] == [(2, 1, H) + conv.w.shape, (2, 1, H) + conv.b.shape]        # [B, k, H, *leaf]
    assert shapes[:2] == [(2, 1) + a.shape for a in jax.tree.leaves(conv.cell)]


@pytest.mark.slow
def test_zucchet_on_two_conv_blocks_is_exact_above_and_approximate_below(x64):
    """The top layer (its buffer holds the lower layer's past outputs, fixed for its own
    parameters) and the readout get the exact gradient; the lower layer's recurrence does not."""
    params, data, carry0 = _problem(2, key=1)
    want = _bptt_grad(params, data, carry0)
    approx, _ = jax.jit(lambda p: online_gradient("zucchet", p, data, carry0))(params)
    top = lambda g: jax.tree.leaves(g["layers"][1]) + jax.tree.leaves(g["readout"])
    low = lambda g: jax.tree.leaves(g["layers"][0].cell)
    assert max(float(jnp.abs(x - y).max()) for x, y in zip(top(approx), top(want))) < 1e-10
    assert max(float(jnp.abs(x - y).max()) for x, y in zip(low(approx), low(want))) > 1e-4


@pytest.mark.slow
def test_uoro_runs_on_a_conv_block(x64):
    """UORO differentiates the whole step: the buffer is part of its state."""
    params, data, carry0 = _problem(1)
    g, _ = online_gradient("uoro", params, data, carry0)
    assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(g))
    assert float(jnp.abs(g["layers"][0].cell.w).max()) > 0


@pytest.mark.slow
def test_stack_remat_and_bf16_with_conv(x64):
    params, (xs, _, _, mask), carry0 = _problem(2, T=8)
    ys, c = rnn_apply(params, xs, carry0, mask)
    yr, cr = rnn_apply(params, xs, carry0, mask, remat=3)
    np.testing.assert_allclose(yr, ys, rtol=1e-12, atol=1e-12)
    for a, b in zip(jax.tree.leaves(cr), jax.tree.leaves(c)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    low, _ = rnn_apply(p32, xs.astype(jnp.float32), jax.tree.map(lambda a: a.astype(jnp.float32), carry0),
                       mask, compute_dtype="bfloat16")
    assert low.dtype == jnp.float32 and float(jnp.abs(low - ys).max()) < 0.1
    assert cell_of(params["layers"][0]).name == "block_glu"


def test_refusals():
    from jaxdl.configure import ConfigError, parse
    from tests.helpers import compose_cfg
    for args, match in [
        (["model=lstm", "+model.conv=4"], "model.conv=4: the causal convolution sits inside a block"),
        (["model=mingru", "model.block=none"], "model.conv=4: the causal convolution sits inside a block"),
        (["model=mingru", "model.conv=-1"], "model.conv"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse(compose_cfg(args), args)
    parse(compose_cfg(["model=mingru", "model.block=none", "model.conv=0"]))
    with pytest.raises(ValueError, match="model.conv=2: the causal convolution is part of a block"):
        rnn_init(jax.random.PRNGKey(0), 3, 4, 2, 1, "mingru", conv=2)
    with pytest.raises(ValueError, match=r"model.conv=-1: the causal convolution's kernel is 0 \(none\)"):
        rnn_init(jax.random.PRNGKey(0), 3, 4, 2, 1, "mingru", block="glu", conv=-1)
