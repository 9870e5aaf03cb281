"""The element-wise estimators (jaxdl.estimators.elementwise): exact RTRL on one element-wise
layer (LRU, minGRU, minLSTM, and a block around one) against full BPTT in float64, with the
influence in the parameters' shape; the rule of Zucchet et al. 2023 on two layers against a
direct computation of the same approximation; refusals; and training through the real loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.estimators import rtrl_memory_bytes
from jaxdl.estimators.elementwise import elementwise_memory_bytes
from jaxdl.models.cell import cell_of
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.objectives import get_objective
from tests.helpers import held_stream, online_gradient, perturbed

XENT = get_objective("xent")
T, B, D, H, O = 6, 2, 3, 4, 3


def _problem(cell, layers, block=None, key=0):
    """Random float64 params (every leaf perturbed off its init), a stream with one held
    step (mask 0, weight 0) and a NONZERO initial carry of every layer."""
    params = perturbed(rnn_init(jax.random.PRNGKey(key), D, H, O, layers, cell, dtype=jnp.float64, block=block),
                       50 + key)
    data, carry0 = held_stream(100 + key, T, B, D, O, rnn_carry(params, B), jnp.float64)
    return params, data, carry0


def _bptt_loss(params, data, carry0, form="sequential"):
    xs, ys, w, mask = data
    preds, _ = rnn_apply(params, xs, carry0, mask, form=form)
    return (XENT(preds, ys)["loss"] * w).sum()


def _online(name, params, data, carry0):
    """(sum over the stream of the per-step gradients, the final estimator state), params fixed."""
    return online_gradient(name, params, data, carry0)


CASES = [("lru", None)] + [pytest.param(c, b, marks=pytest.mark.slow)      # the CI time budget
                           for c, b in (("mingru", "glu"), ("minlstm", "mlp"), ("lru", "glu"), ("mingru", None))]


@pytest.mark.parametrize("cell,block", CASES)
def test_rtrl_on_one_elementwise_layer_equals_full_bptt(x64, cell, block):
    """Exact: every leaf (recurrent ones through the influence, the output map and the block
    through the same step, the readout) equals jax.grad of the whole-stream loss through the
    parallel scan (another implementation), 1e-10, nonzero initial state, a held step."""
    params, data, carry0 = _problem(cell, 1, block)
    want = jax.grad(_bptt_loss)(params, data, carry0, "parallel")
    got, st = jax.jit(lambda p: _online("rtrl", p, data, carry0))(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert float(jnp.abs(b).max()) > 1e-4                   # every leaf gets a real gradient
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    # the influence is k numbers per recurrent parameter: no [n, p] matrix
    p = params["layers"][0]
    ew = cell_of(p).elementwise(p)
    k = len(ew.split(cell_of(p).carry(p, 1)))
    rec = [a for a, f in zip(jax.tree.leaves(p), ew.recurrent(p)) if f]
    assert [m.shape for m in st["M"][0]] == [(B, k) + a.shape for a in rec]
    assert rtrl_memory_bytes(params["layers"], B) == elementwise_memory_bytes(params["layers"], B) \
        == 3 * B * k * sum(a.size for a in rec) * 8


@pytest.mark.slow
def test_zucchet_equals_rtrl_on_one_layer_and_differs_from_it_on_two(x64):
    params, data, carry0 = _problem("lru", 1, "glu")
    a, _ = _online("zucchet", params, data, carry0)
    b, _ = _online("rtrl", params, data, carry0)
    assert max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))) < 1e-12
    params, data, carry0 = _problem("lru", 2, "glu")
    approx, _ = _online("zucchet", params, data, carry0)
    exact, _ = _online("rtrl", params, data, carry0)                  # two layers: dense exact RTRL
    want = jax.grad(_bptt_loss)(params, data, carry0)
    assert max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(exact), jax.tree.leaves(want))) < 1e-10
    top = lambda g: jax.tree.leaves(g["layers"][1]) + jax.tree.leaves(g["readout"])
    low = lambda g: jax.tree.leaves(g["layers"][0].cell)
    # the top layer and the readout see no dropped path; the lower layer's recurrence does
    assert max(float(jnp.abs(x - y).max()) for x, y in zip(top(approx), top(want))) < 1e-10
    assert max(float(jnp.abs(x - y).max()) for x, y in zip(low(approx), low(want))) > 1e-4


def _direct_rule(params, data, carry0):
    """The same approximation computed another way, for two layers: for each layer l and
    step t, e_t^l = dL_t/ds_t^l through step t only (jax.grad in an additive perturbation
    of s_t^l, every earlier quantity a constant) and ds_t^l/dtheta^l of layer l ALONE over
    steps 1..t with its input sequence fixed (jax.jacobian of its reference scan); the
    rule's gradient is sum_t e_t^l . ds_t^l/dtheta^l plus the same-step gradients."""
    xs, ys, w, mask = data
    layers, readout = params["layers"], params["readout"]
    # inputs of every layer and the state sequence, from the plain forward pass
    ins, carries, h = [], [], xs
    for p, c in zip(layers, carry0):
        ins.append(h)
        hs, _ = cell_of(p).reference(p, h, c, mask)
        seq = []
        cc = c
        for t in range(T):
            c2 = cell_of(p).step(p, cc, h[t])
            cc = tuple(jnp.where(mask[t][:, None] != 0, a, b) for a, b in zip(c2, cc))
            seq.append(cc)
        carries.append(seq)
        h = hs
    total = jax.tree.map(jnp.zeros_like, params)
    for t in range(T):
        prev = [carry0[i] if t == 0 else carries[i][t - 1] for i in range(len(layers))]

        def loss_t(lay, r, pushes):
            h, new = xs[t], []
            for p_live, p, c, push in zip(lay, layers, prev, pushes):
                ew = cell_of(p).elementwise(p)
                st = ew.rec(jax.lax.stop_gradient(p), tuple(ew.split(tuple(c))), h)
                st = tuple(a + b for a, b in zip(st, push))
                c2 = ew.emit(p_live, st, h)
                c2 = tuple(jnp.where(mask[t][:, None] != 0, a, b) for a, b in zip(c2, c))
                new.append(c2)
                h = cell_of(p).output(c2)
            pred = h @ r["w"] + r["b"]
            return (XENT(pred, ys[t])["loss"] * w[t]).sum()
        zeros = [tuple(jnp.zeros((B, H)) for _ in cell_of(p).elementwise(p).split(cell_of(p).carry(p, B)))
                 for p in layers]
        g_lay, g_r, e = jax.grad(loss_t, argnums=(0, 1, 2))(layers, readout, zeros)
        total = jax.tree.map(jnp.add, total, {"layers": g_lay, "readout": g_r})
        for i, p in enumerate(layers):
            ew = cell_of(p).elementwise(p)
            x_in = ins[i]

            def state_t(q):        # s_t of layer i alone, its inputs fixed, from its carry0
                c = carry0[i]
                for u in range(t + 1):
                    c2 = cell_of(q).step(q, c, x_in[u])
                    c = tuple(jnp.where(mask[u][:, None] != 0, a, b) for a, b in zip(c2, c))
                return ew.split(c)
            J = jax.jacobian(state_t)(p)                       # per state component: pytree of [B, H, *leaf]
            for a, ea in enumerate(e[i]):
                contrib = jax.tree.map(lambda j: jnp.tensordot(ea, j, axes=([0, 1], [0, 1])), J[a])
                total["layers"][i] = jax.tree.map(jnp.add, total["layers"][i], contrib)
    return total


@pytest.mark.parametrize("cell,block", [("lru", "glu"), pytest.param("mingru", None, marks=pytest.mark.slow)])
def test_zucchet_on_two_layers_equals_a_direct_computation_of_the_rule(x64, cell, block):
    params, data, carry0 = _problem(cell, 2, block, key=1)
    got, _ = jax.jit(lambda p: _online("zucchet", p, data, carry0))(params)
    want = _direct_rule(params, data, carry0)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
