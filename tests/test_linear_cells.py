"""The element-wise linear cells (LRU, minGRU, minLSTM) and the block: each against an
independent numpy implementation of its paper's equations, 式6 finite differences on every
parameter and the initial carry, the fast scans (both forms) against autodiff of the plain
reference, the parallel scan against the sequential one (float64 1e-12, float32 1e-5),
carry in and out, masks, the LRU's initialisation, and the config's refusals."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.gradcheck import gradient_check
from jaxdl.models.block import BLOCKS
from jaxdl.models.cell import cells, elementwise_of, get_cell, hidden_of
from jaxdl.models.linear_scan import linear_recurrence
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init

LINEAR = ["lru", "mingru", "minlstm"]
SLOW = pytest.mark.slow          # the CI time budget: these repeat what a CI test covers in another form


def _setup(name, T=5, B=2, D=3, H=4, dtype=jnp.float64, seed=0, block=None):
    """Params perturbed off their init, inputs, a NONZERO initial carry and a mask that holds
    some (step, sample) pairs."""
    cell = BLOCKS[block] if block else get_cell(name)
    ks = jax.random.split(jax.random.PRNGKey(seed), 5)
    p = cell.init(ks[0], D, H, dtype, **({"inner": name} if block else {}))
    leaves, tdef = jax.tree.flatten(p)
    p = jax.tree.unflatten(tdef, [a + 0.1 * jax.random.normal(k, a.shape, dtype)
                                  for a, k in zip(leaves, jax.random.split(ks[1], len(leaves)))])
    xs = jax.random.normal(ks[2], (T, B, D), dtype)
    carry = tuple(0.5 * jax.random.normal(k, (B, H), dtype)
                  for k in jax.random.split(ks[3], len(cell.carry(p, B))))
    mask = jnp.ones((T, B), dtype).at[1, 0].set(0).at[3, 1].set(0)
    return cell, p, xs, carry, mask


def _np(a):
    return np.asarray(a, np.float64)


# ---- independent implementations of the papers' equations (numpy, one step at a time) ----

def _lru_numpy(p, xs, carry, mask):
    """Orvieto et al. 2023, appendix A, in complex numpy: lambda = exp(-exp(nu) + i exp(theta)),
    B_norm = (B_re + i B_im) * exp(gamma), h = lambda h + B_norm u, y = Re(C h) + D u."""
    lam = np.exp(-np.exp(_np(p.nu_log)) + 1j * np.exp(_np(p.theta_log)))
    Bn = (_np(p.b_re) + 1j * _np(p.b_im)).T * np.exp(_np(p.gamma_log))[:, None]    # [H, D] as the paper
    C = (_np(p.c_re) + 1j * _np(p.c_im)).T                                         # [H_out, H]
    y, h = _np(carry[0]), _np(carry[1]) + 1j * _np(carry[2])
    ys = []
    for t in range(xs.shape[0]):
        u = _np(xs[t])
        h2 = lam * h + u @ Bn.T
        d = _np(p.d)
        y2 = (h2 @ C.T).real + (u * d if d.ndim == 1 else u @ d)
        m = _np(mask[t])[:, None] != 0
        h, y = np.where(m, h2, h), np.where(m, y2, y)
        ys.append(y)
    return np.stack(ys), (y, h.real, h.imag)


def _mingru_numpy(p, xs, carry, mask):
    """Feng et al. 2024 (3.1): z = sigmoid(Linear_z(x)), h~ = Linear_h(x), h = (1 - z) h + z h~."""
    H = p.b.shape[0] // 2
    W, b = _np(p.wx), _np(p.b)
    h = _np(carry[0])
    hs = []
    for t in range(xs.shape[0]):
        x = _np(xs[t])
        z = 1 / (1 + np.exp(-(x @ W[:, :H] + b[:H])))
        h2 = (1 - z) * h + z * (x @ W[:, H:] + b[H:])
        h = np.where(_np(mask[t])[:, None] != 0, h2, h)
        hs.append(h)
    return np.stack(hs), (h,)


def _minlstm_numpy(p, xs, carry, mask):
    """Feng et al. 2024 (3.2): f, i = sigmoid(Linear(x)), normalised f' = f / (f + i),
    i' = i / (f + i); h = f' h + i' Linear_h(x)."""
    H = p.b.shape[0] // 3
    W, b = _np(p.wx), _np(p.b)
    sig = lambda v: 1 / (1 + np.exp(-v))
    h = _np(carry[0])
    hs = []
    for t in range(xs.shape[0]):
        x = _np(xs[t])
        f, i = sig(x @ W[:, :H] + b[:H]), sig(x @ W[:, H:2 * H] + b[H:2 * H])
        h2 = f / (f + i) * h + i / (f + i) * (x @ W[:, 2 * H:] + b[2 * H:])
        h = np.where(_np(mask[t])[:, None] != 0, h2, h)
        hs.append(h)
    return np.stack(hs), (h,)


NUMPY = {"lru": _lru_numpy, "mingru": _mingru_numpy, "minlstm": _minlstm_numpy}


@pytest.mark.parametrize("form", [pytest.param("sequential", marks=SLOW), "parallel"])
@pytest.mark.parametrize("name", ["lru", "mingru", pytest.param("minlstm", marks=SLOW)])
def test_scan_equals_the_papers_equations_in_numpy(x64, name, form):
    for D in (3, 4):                       # the LRU's feed-through: dense [D, H], then diagonal [H] (D = H)
        cell, p, xs, carry, mask = _setup(name, D=D)
        hs, cT = cell.scan(p, xs, carry, mask, form=form)
        want_hs, want_c = NUMPY[name](p, xs, carry, mask)
        np.testing.assert_allclose(hs, want_hs, rtol=1e-12, atol=1e-13)
        for a, b in zip(cT, want_c):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@SLOW
def test_block_equals_its_equation_in_numpy(x64):
    """y = x + (gelu(u) W_a + b_a) * sigmoid(gelu(u) W_g + b_g), u the minGRU's h (D = H)."""
    cell, p, xs, carry, mask = _setup("mingru", D=4, block="glu")
    ys, _ = cell.scan(p, xs, carry, mask)
    u, _ = _mingru_numpy(p.cell, xs, carry[1:], mask)
    g = _np(jax.nn.gelu(jnp.asarray(u)))
    v = g @ _np(p.w) + _np(p.b)
    y = _np(xs) + v[..., :4] / (1 + np.exp(-v[..., 4:]))
    # held steps show the last real step's y (sample 0 at t=1 holds carry's... t=0's y)
    y[1, 0], y[3, 1] = y[0, 0], y[2, 1]
    np.testing.assert_allclose(ys, y, rtol=1e-12, atol=1e-13)


# ---- gradients ----------------------------------------------------------------------

def _loss(run, w):
    def f(p, xs, carry):
        hs, c = run(p, xs, carry)
        return (hs * w).sum() + sum(0.3 * jnp.sin(k).sum() for k in c)
    return f


@pytest.mark.parametrize("name,block", [("lru", None), ("mingru", None), pytest.param("minlstm", None, marks=SLOW),
                                        pytest.param("lru", "glu", marks=SLOW),
                                        pytest.param("mingru", "mlp", marks=SLOW)])
def test_finite_differences_every_parameter_and_initial_state(x64, name, block):
    """式6 on every element of every parameter and of the initial carry, through the fast
    scan, nonzero initial state, a mask that holds some steps."""
    cell, p, xs, carry, mask = _setup(name, T=4, D=4 if block else 3, H=4, block=block)
    w = jax.random.normal(jax.random.PRNGKey(9), (4, 2, 4), jnp.float64)
    f = _loss(lambda q, x, c: cell.scan(q, x, c, mask, form="parallel"), w)
    errs = gradient_check(lambda q: f(q["params"], xs, q["carry"]), {"params": p, "carry": carry})
    assert len(errs) == len(jax.tree.leaves(p)) + len(carry)
    assert max(errs.values()) < 1e-6, errs


@pytest.mark.parametrize("name", ["lru", pytest.param("mingru", marks=SLOW), pytest.param("minlstm", marks=SLOW)])
def test_both_forms_equal_autodiff_of_the_reference_and_each_other(x64, name):
    """Outputs, final carry and every gradient (params, inputs, initial carry): each form
    against autodiff of the plain reference scan of the step (1e-10), and the parallel
    form against the sequential one in float64 (1e-12)."""
    cell, p, xs, carry, mask = _setup(name, T=7)
    w = jax.random.normal(jax.random.PRNGKey(9), (7, 2, 4), jnp.float64)
    ref = _loss(lambda q, x, c: cell.reference(q, x, c, mask), w)
    g_ref = jax.grad(ref, argnums=(0, 1, 2))(p, xs, carry)
    out = {}
    for form in ("sequential", "parallel"):
        fast = _loss(lambda q, x, c: cell.scan(q, x, c, mask, form=form), w)
        g = jax.grad(fast, argnums=(0, 1, 2))(p, xs, carry)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        out[form] = (cell.scan(p, xs, carry, mask, form=form), g)
    for a, b in zip(jax.tree.leaves(out["parallel"]), jax.tree.leaves(out["sequential"])):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", LINEAR)
@SLOW
def test_parallel_equals_sequential_in_float32(name):
    cell, p, xs, carry, mask = _setup(name, T=24, B=3, D=5, H=8, dtype=jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(9), (24, 3, 8))
    outs = [jax.value_and_grad(_loss(lambda q, x, c: cell.scan(q, x, c, mask, form=f), w))(p, xs, carry)
            for f in ("sequential", "parallel")]
    outs = [(o, cell.scan(p, xs, carry, mask, form=f)) for o, f in zip(outs, ("sequential", "parallel"))]
    for a, b in zip(jax.tree.leaves(outs[1]), jax.tree.leaves(outs[0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lru", pytest.param("mingru", marks=SLOW), pytest.param("minlstm", marks=SLOW)])
def test_carry_in_and_out_and_masks_hold_the_state(x64, name):
    cell, p, xs, carry, mask = _setup(name, T=6)
    for form in ("sequential", "parallel"):
        hs, cT = cell.scan(p, xs, carry, mask, form=form)
        h1, c1 = cell.scan(p, xs[:3], carry, mask[:3], form=form)          # two halves, the carry between
        h2, c2 = cell.scan(p, xs[3:], c1, mask[3:], form=form)
        np.testing.assert_allclose(jnp.concatenate([h1, h2]), hs, rtol=1e-12, atol=1e-13)
        for a, b in zip(c2, cT):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(hs[1, 0], hs[0, 0])                  # held at (1, 0)
        np.testing.assert_array_equal(hs[3, 1], hs[2, 1])                  # held at (3, 1)
        assert not np.allclose(hs[1, 1], hs[0, 1])
        _, held = cell.scan(p, xs, carry, jnp.zeros_like(mask), form=form)
        for a, b in zip(held, carry):
            np.testing.assert_array_equal(a, b)


def test_linear_recurrence_forms_on_complex_values(x64):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    a = jax.lax.complex(*(0.9 * jax.random.uniform(kk, (33, 2, 3), jnp.float64) for kk in k[:2]))
    b = jax.lax.complex(*(jax.random.normal(kk, (33, 2, 3), jnp.float64) for kk in k[2:]))
    h0 = jnp.full((2, 3), 0.5 + 0.25j)
    want, h = [], h0
    for t in range(33):
        h = a[t] * h + b[t]
        want.append(h)
    for form in ("sequential", "parallel"):
        np.testing.assert_allclose(linear_recurrence(a, b, h0, form), jnp.stack(want), rtol=1e-12, atol=1e-12)


# ---- the LRU's initialisation, the interface, the stack ------------------------------

def test_lru_init_follows_the_paper():
    c = get_cell("lru")
    p = c.init(jax.random.PRNGKey(0), 3, 512, jnp.float32, r_min=0.4, r_max=0.9, max_phase=0.5)
    mod = np.exp(-np.exp(np.asarray(p.nu_log)))
    phase = np.exp(np.asarray(p.theta_log))
    assert 0.4 - 1e-5 <= mod.min() and mod.max() <= 0.9 + 1e-5
    # |lambda|^2 uniform on [r_min^2, r_max^2]: its mean is (r_min^2 + r_max^2) / 2
    assert abs((mod ** 2).mean() - (0.16 + 0.81) / 2) < 0.03
    assert 0 < phase.min() and phase.max() <= 0.5 and phase.std() > 0.1
    np.testing.assert_allclose(np.exp(np.asarray(p.gamma_log)), np.sqrt(1 - mod ** 2), rtol=1e-5)
    assert abs(float(np.asarray(p.b_re).std()) - 1 / np.sqrt(6)) < 0.05       # N(0, 1/(2D))
    assert p.d.shape == (3, 512) and c.init(jax.random.PRNGKey(0), 8, 8).d.shape == (8,)
    with pytest.raises(ValueError, match="r_min < r_max"):
        c.init(jax.random.PRNGKey(0), 3, 4, r_min=0.9, r_max=0.5)


def test_registry_and_interface_of_the_new_cells():
    found = cells()
    assert {"lru", "mingru", "minlstm"} <= set(found)
    assert not any(n.startswith("block") for n in found)                   # blocks wrap, they are no model=
    for name in LINEAR:
        c = found[name]
        assert c.forms == ("sequential", "parallel") and c.elementwise is not None
        p = c.init(jax.random.PRNGKey(0), 3, 5)
        assert hidden_of(p) == 5 and not hasattr(p, "wh")
        assert elementwise_of(p) is not None
    for name in ("lstm", "gru", "rnn"):
        p = found[name].init(jax.random.PRNGKey(0), 3, 5)
        assert hidden_of(p) == 5 and elementwise_of(p) is None and found[name].forms == ("sequential",)
        with pytest.raises(ValueError, match="model.scan=parallel"):
            found[name].scan(p, jnp.zeros((2, 1, 3)), found[name].carry(p, 1), form="parallel")


@SLOW
def test_a_stack_of_blocks_runs_both_forms_and_bf16(x64):
    params = rnn_init(jax.random.PRNGKey(0), 3, 8, 5, 2, "lru", dtype=jnp.float64, block="glu")
    xs = jax.random.normal(jax.random.PRNGKey(1), (9, 2, 3), jnp.float64)
    ys = {f: rnn_apply(params, xs, rnn_carry(params, 2), form=f)[0] for f in ("sequential", "parallel")}
    np.testing.assert_allclose(ys["parallel"], ys["sequential"], rtol=1e-12, atol=1e-12)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    low, _ = rnn_apply(p32, xs.astype(jnp.float32), rnn_carry(p32, 2), compute_dtype="bfloat16")
    assert low.dtype == jnp.float32 and float(jnp.abs(low - ys["sequential"]).max()) < 0.1


def test_config_refuses_what_a_cell_cannot_do():
    from jaxdl.configure import ConfigError, parse
    from tests.helpers import compose_cfg
    for args, match in [
        (["model=lstm", "model.scan=parallel"], "model.scan=parallel: model 'lstm' has the forms"),
        (["model=gru", "+model.r_min=0.5"], "model.r_min: model 'gru' does not take it; only model=lru"),
        (["model=lru", "model.hoist=false"], "model.hoist=false: model 'lru' projects its inputs"),
        (["model=lru", "estimator=snap1"], "estimator=snap1: model=lru"),
        (["model=mingru", "estimator=snap1", "model.block=glu"], "estimator=snap1: model=mingru"),
        (["model=lstm", "estimator=zucchet"], "estimator=zucchet: model=lstm is not element-wise"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse(compose_cfg(args), args)
    # a minGRU's carry is its state (without the block's convolution, whose buffer is not)
    parse(compose_cfg(["model=mingru", "estimator=snap1", "model.block=none", "model.conv=0"]))
