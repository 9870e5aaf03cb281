"""Mixed precision (model.dtype=bfloat16): bf16 matmul inputs, float32 accumulation,
float32 parameters, cell state, carry and gradients.

Tolerances: bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 2e-3), so a
gradient computed with bf16 matmul inputs over T=20 steps differs from the float32
gradient by about 3e-3 in relative norm (measured); the tests allow 1e-2 per
parameter, and require the difference to be above 1e-5 so a path that silently stays
in float32 fails."""
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.models.lstm import lstm_init, lstm_scan, lstm_scan_reference
from jaxdl.models.products import compute_dtype_of
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init

T, B, D, H = 20, 8, 16, 32
NAMES = ["wx", "wh", "b", "xs", "h0", "c0"]


def _setup():
    ks = jax.random.split(jax.random.PRNGKey(0), 6)
    p = lstm_init(ks[0], D, H)
    p = p._replace(b=p.b + 0.3 * jax.random.normal(ks[5], p.b.shape))
    xs = jax.random.normal(ks[1], (T, B, D))
    carry = (0.5 * jax.random.normal(ks[2], (B, H)), jax.random.normal(ks[3], (B, H)))
    w = jax.random.normal(ks[4], (T, B, H))
    mask = jnp.asarray(np.random.default_rng(0).random((T, B)) > 0.2, jnp.float32)
    return p, xs, carry, w, mask


def _grads(scan, p, xs, carry, w, mask, **kw):
    def f(p, xs, c):
        hs, (h, cc) = scan(p, xs, c, mask, **kw)
        return (hs * w).sum() + 0.3 * (h ** 2).sum() + 0.7 * jnp.sin(cc).sum()
    return jax.tree.leaves(jax.jit(jax.grad(f, argnums=(0, 1, 2)))(p, xs, carry))


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("hoist", [False, True])
def test_bf16_gradients_are_close_to_float32(hoist):
    p, xs, carry, w, mask = _setup()
    g32 = _grads(lstm_scan_reference, p, xs, carry, w, mask)
    g16 = _grads(lstm_scan, p, xs, carry, w, mask, hoist=hoist, compute_dtype="bfloat16")
    for name, a, b in zip(NAMES, g16, g32):
        assert a.dtype == jnp.float32, name          # gradients (and master weights) stay f32
        assert 1e-5 < _rel(a, b) < 1e-2, (name, _rel(a, b))


@pytest.mark.parametrize("hoist", [False, True])
def test_bf16_custom_vjp_matches_autodiff_of_the_reference_in_bf16(hoist):
    """The hand-written backward against autodiff of the plain scan with the same casts.
    They round in different places (autodiff rounds each cotangent that crosses a cast to
    bf16; the custom VJP keeps (dh, dc) in f32), so they agree to bf16 accuracy, and the
    custom VJP is never further from the float32 gradient than autodiff is (x1.5)."""
    p, xs, carry, w, mask = _setup()
    g32 = _grads(lstm_scan_reference, p, xs, carry, w, mask)
    ours = _grads(lstm_scan, p, xs, carry, w, mask, hoist=hoist, compute_dtype="bfloat16")
    ref = _grads(lstm_scan_reference, p, xs, carry, w, mask, compute_dtype="bfloat16")
    for name, a, r, f in zip(NAMES, ours, ref, g32):
        assert _rel(a, r) < 1e-2, (name, _rel(a, r))
        assert _rel(a, f) <= 1.5 * _rel(r, f) + 1e-4, (name, _rel(a, f), _rel(r, f))
    # and the forward pass is the same function in bf16 compute
    o1 = jax.jit(lambda p: lstm_scan(p, xs, carry, mask, hoist=hoist, compute_dtype="bfloat16"))(p)
    o2 = jax.jit(lambda p: lstm_scan_reference(p, xs, carry, mask, compute_dtype="bfloat16"))(p)
    for a, b in zip(jax.tree.leaves(o1), jax.tree.leaves(o2)):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_bf16_every_matmul_takes_bf16_inputs_and_accumulates_in_f32():
    """Forward and backward, LSTM and readout: every dot_general in the gradient's jaxpr
    has bf16 operands and a float32 result; nothing else is bf16 at the outputs."""
    params = rnn_init(jax.random.PRNGKey(1), 5, 16, 3, layers=2)
    xs = jax.random.normal(jax.random.PRNGKey(2), (6, 4, 5))

    def loss(p):
        ys, carry = rnn_apply(p, xs, rnn_carry(p, 4), compute_dtype="bfloat16")
        assert ys.dtype == jnp.float32 and all(a.dtype == jnp.float32 for a in jax.tree.leaves(carry))
        return (ys ** 2).sum()
    jaxpr = jax.make_jaxpr(jax.grad(loss))(params)
    dots, made_by = [], {}

    def walk(jp):
        for eqn in jp.eqns:
            for v in eqn.outvars:
                made_by[v] = eqn
            if eqn.primitive.name == "dot_general":
                dots.append(eqn)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)
    walk(jaxpr.jaxpr)

    def bf16_input(v):
        """bf16 itself (GPU/TPU: a native bf16 x bf16 -> f32 dot), or on the CPU, where XLA's
        dot lacks that kernel, a bf16 value converted back to f32 (the same products)."""
        if v.aval.dtype == jnp.bfloat16:
            return True
        e = made_by.get(v)
        return (jax.default_backend() == "cpu" and e is not None and e.primitive.name == "convert_element_type"
                and e.invars[0].aval.dtype == jnp.bfloat16)
    # 2 layers x (forward: x@Wx, h@Wh; backward: dz@Wh^T, dWx, dWh, dx) + readout (1 + 2)
    assert len(dots) >= 2 * 6 + 3
    for e in dots:
        assert all(bf16_input(v) for v in e.invars), e
        assert e.outvars[0].aval.dtype == jnp.float32, e


def test_bf16_stacked_rnn_gradients_close_to_float32():
    params = rnn_init(jax.random.PRNGKey(3), 5, 24, 3, layers=2)
    xs = jax.random.normal(jax.random.PRNGKey(4), (15, 4, 5))
    carry = tuple((0.3 * jax.random.normal(jax.random.PRNGKey(10 + i), (4, 24)),
                   jax.random.normal(jax.random.PRNGKey(20 + i), (4, 24))) for i in range(2))
    ys = jax.random.normal(jax.random.PRNGKey(5), (15, 4, 3))

    def grads(cd):
        return jax.tree.leaves(jax.jit(jax.grad(
            lambda p: ((rnn_apply(p, xs, carry, compute_dtype=cd)[0] - ys) ** 2).sum()))(params))
    for a, b in zip(grads("bfloat16"), grads(None)):
        assert a.dtype == jnp.float32
        assert 1e-5 < _rel(a, b) < 1e-2, _rel(a, b)


def test_float32_compute_dtype_is_the_plain_path_and_bad_dtypes_are_refused():
    p, xs, carry, w, mask = _setup()
    a = _grads(lstm_scan, p, xs, carry, w, mask, compute_dtype="float32")
    b = _grads(lstm_scan, p, xs, carry, w, mask)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert compute_dtype_of(None) is None and compute_dtype_of("float32") is None
    with pytest.raises(ValueError, match="model.dtype=bfloat16"):
        lstm_scan(p, xs, carry, compute_dtype="float16")


def test_echo_learns_exactly_with_bf16_through_the_tbptt_engine():
    """The echo task (lag 4) trained with TBPTT(5, 10) and bf16 matmuls reaches test
    accuracy 1.0 as float32 does; parameters and optimizer state stay float32."""
    from jaxdl.objectives import softmax_xent
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.tbptt import make_schedule, make_tbptt, summarize

    task = echo(EchoConfig(lag=4, vocab=4, length=400, streams=16, test_length=400, val_length=0), 0)
    opt = optax.adam(1e-2)
    N, Tn, Bn = task.train.mask.shape
    apply_fn = lambda p, x, c, m: rnn_apply(p, x, c, m, compute_dtype="bfloat16")
    eng = make_tbptt(apply_fn, softmax_xent, opt, rnn_carry, make_schedule(Tn, 5, 10), reset="epoch")
    params = rnn_init(jax.random.PRNGKey(0), 4, 32, 4)
    opt_state = opt.init(params)
    train = jax.tree.map(jnp.asarray, task.train)
    state = eng.fresh_state(params, jax.tree.map(lambda a: a[0], train))
    run_epoch = jax.jit(eng.run_epoch)
    for _ in range(25):
        params, opt_state, state, out = run_epoch(params, opt_state, state, train)
    floats = [a for a in jax.tree.leaves((params, opt_state)) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert len(floats) == 3 * 5 and all(a.dtype == jnp.float32 for a in floats)   # params, Adam mu, nu
    test = jax.tree.map(lambda a: jnp.asarray(a[0]), task.test)
    logits, _ = jax.jit(apply_fn)(params, test.x, rnn_carry(params, Bn), test.mask)
    acc = (jnp.argmax(logits, -1) == test.y).astype(jnp.float32)
    acc = float((acc * test.weight).sum() / test.weight.sum())
    assert float(summarize(out)["loss"]) < 0.05
    assert acc == 1.0, acc
