"""Online learning of stacks of element-wise recurrent layers (Zucchet, Meier, Schug, Mujika &
Sacramento 2023, "Online learning of long-range dependencies", NeurIPS): each layer's
influence exact and kept in the shape of its parameters, the loss gradient passed down the
layers at the same step only. With one layer it is exact RTRL (`estimator=rtrl` runs it
there); with more it is the paper's approximation (`estimator=zucchet`).

A layer whose cell is element-wise (jaxdl.models.cell.Elementwise: LRU, minGRU, minLSTM,
and a block around one) splits its step into

    s_t = rec(theta, s_{t-1}, x_t, ctx)  k components [H], unit u of s_t reads unit u of
                                         s_{t-1} only; column j of every recurrent leaf
                                         feeds unit j % H only
    c_t = emit(phi, s_t, x_t, ctx)       the carry (what the layer above and the readout read)
    ctx = context(c_{t-1})               what else of the old carry they read (a conv's buffer
                                         of past inputs: fixed by the inputs, no influence)

so ds_t/dtheta has one number per (component, parameter): the influence, per recurrent leaf
of shape [k, *leaf.shape] (no [n, p] matrix),

    M_t[a, j] = sum_b D_t[a, b, j % H] M_{t-1}[b, j] + I_t[a, j]
    D_t[a, b, u] = ds^a_{t,u} / ds^b_{t-1,u}      (k jvps of rec, tangent: ones on component b)
    I_t[a, j]    = ds^a_{t,j%H} / dtheta_j         (k vjps of rec, cotangent: ones on component a)

and the gradient of L_t (per step, summed over t by the trainer):

    dL_t/dtheta_j = sum_a e_t[a, j % H] M_t[a, j] + (the same-step path, if emit reads theta)
    dL_t/dphi     = the same-step gradient through emit (exact: phi acts at step t only)
    e_t[a, u]     = dL_t/ds^a_{t,u} through this step's emit, the layers above at step t
                    and the readout (one vjp in an additive zero "push" on every layer's s_t)

A DENSE leaf (jaxdl.models.cell.DENSE: a causal convolution's w, b before the recurrence)
feeds every unit: its influence is [k, H, *leaf.shape], M_t[a, u] = sum_b D_t[a, b, u]
M_{t-1}[b, u] + ds^a_{t,u}/dleaf (the Jacobian of rec in the DENSE leaves: one jvp per
parameter of the leaf or k H vjps, whichever are fewer), dL_t/dleaf = sum_{a,u} e_t[a, u] M_t[a, u].

One layer: exact, the gradient of the loss over the whole stream with the parameters fixed
(equal to full BPTT; tests/test_elementwise_estimators.py). Stacked layers: a lower layer's
parameters influence an upper layer's state over time, which is dropped (the paper's
approximation); the same-step path down the stack is kept.

Cost per step and stream: about 2k + 3 forward passes of the stack (k = 2 for the LRU's
complex state, 1 for minGRU / minLSTM), plus min(k H, DENSE parameters) with DENSE leaves; memory k x
(recurrent parameters) numbers, k H x for DENSE leaves.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxdl.estimators.online import Estimator, _one, _unone, batch_step, hold, layer_output, step_loss
from jaxdl.models.cell import DENSE, cell_of, elementwise_of

# the layout of the state a checkpoint holds (jaxdl.estimators.STATE_LAYOUTS)
STATE_LAYOUT = 1


def is_elementwise(layers) -> bool:
    """Whether every layer's cell is element-wise (the rule applies)."""
    return all(elementwise_of(p) is not None for p in layers)


def check_elementwise(layers, name: str) -> None:
    bad = sorted({cell_of(p).name for p in layers if elementwise_of(p) is None})
    if bad:
        raise ValueError(f"estimator={name}: cells {bad} are not element-wise in their state; use "
                         "model=lru|mingru|minlstm (or estimator=snap1 for a dense cell)")


def _split_leaves(p, which=bool):
    """(the leaves whose Elementwise.recurrent flag f has which(f), their flags,
    rebuild(those leaves) -> params) of one layer; by default the recurrent leaves."""
    leaves, treedef = jax.tree.flatten(p)
    flags = tuple(elementwise_of(p).recurrent(p))

    def rebuild(picked):
        it = iter(picked)
        return treedef.unflatten([next(it) if which(f) else leaf for leaf, f in zip(leaves, flags)])
    return (tuple(leaf for leaf, f in zip(leaves, flags) if which(f)),
            tuple(f for f in flags if which(f)), rebuild)


def _is_dense(flag) -> bool:
    return isinstance(flag, str) and flag == DENSE


def _state_shape(p) -> tuple[int, int]:
    """(k, H): the recurrent components of one layer's state and their width."""
    c = cell_of(p)
    state = elementwise_of(p).split(c.carry(p, 1))
    return len(state), state[0].shape[-1]


def _rec(p, state, x, ctx):
    """rec for one stream: state (k arrays [H]), x [D], ctx (the carry's context) -> state."""
    return _unone(elementwise_of(p).rec(p, _one(state), x[None], _one(ctx)))


def _emit(p, state, x, ctx):
    return _unone(elementwise_of(p).emit(p, _one(state), x[None], _one(ctx)))


def _context(p, carry):
    """The context (Elementwise.context) of one stream's carry."""
    return _unone(elementwise_of(p).context(_one(tuple(carry))))


def _by_unit(block, width: int):
    """[..., H] -> [..., width]: entry j is block[..., j % H]."""
    return jnp.tile(block, (1,) * (block.ndim - 1) + (width // block.shape[-1],))


def _unit_tangents(state):
    """k tangents (or cotangents) of a state of k [H] arrays: the b-th is ones on component b,
    stacked on a leading axis (vmapped over)."""
    k = len(state)
    return tuple(jnp.stack([jnp.full_like(c, 1.0 if a == b else 0.0) for b in range(k)])
                 for a, c in enumerate(state))


def _unit_cotangents(state):
    """k H cotangents of a state of k [H] arrays: one-hot on (component a, unit u), stacked
    on a leading axis of k H (a-major)."""
    k, H = len(state), state[0].shape[-1]
    eye = jnp.eye(k * H, dtype=state[0].dtype).reshape(k * H, k, H)
    return tuple(eye[:, a] for a in range(k))


def _dense_jacobian(rec_of, leaf, s):
    """ds_t/dleaf [k, H, *leaf.shape] of a DENSE leaf, rec_of(leaf) -> s_t: one jvp per
    parameter or k H vjps (one per component and unit), whichever are fewer."""
    k, H = len(s), s[0].shape[-1]
    if leaf.size < k * H:
        return jnp.stack(jax.jacfwd(rec_of)(leaf))
    _, vjp = jax.vjp(rec_of, leaf)
    (I,) = jax.vmap(vjp)(_unit_cotangents(s))                           # [k H, *leaf.shape]
    return I.reshape((k, H) + leaf.shape)


def layer_influence(p, carry, x, M):
    """One layer's step and influence update: carry (one stream), input x [D], M (tuple over
    recurrent leaves of [k, *leaf.shape], DENSE ones [k, H, *leaf.shape]) -> (new state
    s_t, M_t)."""
    ew = elementwise_of(p)
    s, ctx = tuple(ew.split(tuple(carry))), _context(p, carry)
    new = _rec(p, s, x, ctx)
    tangents = _unit_tangents(s)
    Dt = jax.vmap(lambda t: jax.jvp(lambda ss: _rec(p, ss, x, ctx), (s,), (t,))[1])(tangents)
    D = jnp.stack(Dt, axis=0)                                           # [a, b, H]
    unit_leaves, _, rebuild = _split_leaves(p, lambda f: bool(f) and not _is_dense(f))
    _, vjp = jax.vjp(lambda rl: _rec(rebuild(rl), s, x, ctx), unit_leaves)
    (I_unit,) = jax.vmap(vjp)(tangents)                                 # leaves [k(a), *leaf.shape]
    I_unit = iter(I_unit)
    dense_leaves, _, rebuild_dense = _split_leaves(p, _is_dense)

    def rec_dense(i, leaf):                                             # rec in DENSE leaf i alone
        return _rec(rebuild_dense(dense_leaves[:i] + (leaf,) + dense_leaves[i + 1:]), s, x, ctx)
    I_dense = iter([_dense_jacobian(partial(rec_dense, i), leaf, s) for i, leaf in enumerate(dense_leaves)])
    _, flags, _ = _split_leaves(p)
    out = []
    for Mi, f in zip(M, flags):
        if _is_dense(f):
            out.append(jnp.einsum("abu,bu...->au...", D, Mi) + next(I_dense))
        else:
            out.append(jnp.einsum("abj,b...j->a...j", _by_unit(D, Mi.shape[-1]), Mi) + next(I_unit))
    return new, tuple(out)


def stream_step(objective, params, s, est, x, y, w, m):
    """One step of one stream: (carry, {"M": per layer}, grads, sums); see the module docstring."""
    layers, readout = params["layers"], params["readout"]
    states, Ms, h = [], [], x
    for p, c, Mi in zip(layers, s, est["M"]):
        s2, Mi = layer_influence(p, c, h, Mi)
        states.append(s2)
        Ms.append(Mi)
        h = layer_output(p, _emit(p, s2, h, _context(p, c)))
    push = [jax.tree.map(jnp.zeros_like, st) for st in states]

    def loss(lay, r, push):
        new, h = [], x
        for p_live, p, c, ps in zip(lay, layers, s, push):
            ctx = _context(p, c)
            st = _rec(jax.lax.stop_gradient(p), tuple(elementwise_of(p).split(tuple(c))), h, ctx)
            c2 = _emit(p_live, tuple(a + b for a, b in zip(st, ps)), h, ctx)
            new.append(c2)
            h = layer_output(p_live, c2)
        val, sums = step_loss(objective, r, lay, new, y, w)
        return val, (sums, tuple(new))

    (_, (sums, new)), (g_lay, g_read, g_push) = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        layers, readout, push)
    grads = []
    for p, g, Mi, e in zip(layers, g_lay, Ms, g_push):
        e = jnp.stack(e)                                                # [k, H]: dL_t/ds_t of this layer
        leaves, treedef = jax.tree.flatten(g)
        flags = elementwise_of(p).recurrent(p)
        _, rec_flags, _ = _split_leaves(p)
        through = iter(jnp.einsum("au,au...->...", e, Mk) if _is_dense(f) else
                       jnp.einsum("aj,a...j->...j", _by_unit(e, Mk.shape[-1]), Mk) for Mk, f in zip(Mi, rec_flags))
        grads.append(treedef.unflatten([leaf + next(through) if f else leaf for leaf, f in zip(leaves, flags)]))
    s2, Ms = hold(m, (new, tuple(Ms)), (s, est["M"]))
    return s2, {"M": Ms}, {"layers": grads, "readout": g_read}, sums


def influence_zero(layers, batch: int):
    """Zero influence of `batch` streams: per layer a tuple over its recurrent leaves of
    [B, k, *leaf.shape]."""
    out = []
    for p in layers:
        k, H = _state_shape(p)
        rec_leaves, flags, _ = _split_leaves(p)
        out.append(tuple(jnp.zeros((batch, k) + ((H,) if _is_dense(f) else ()) + a.shape, a.dtype)
                         for a, f in zip(rec_leaves, flags)))
    return tuple(out)


def elementwise_estimator(objective, name: str = "zucchet") -> Estimator:
    """The rule over params["layers"] (every layer element-wise) for a jaxdl.objectives
    `objective`. State: {"M": per layer, a tuple over recurrent leaves of [B, k, *leaf.shape]}."""
    step = batch_step(lambda *a: stream_step(objective, *a))

    def init(params, batch, key=None):
        check_elementwise(params["layers"], name)
        return {"M": influence_zero(params["layers"], batch)}

    def reset(est):
        return jax.tree.map(jnp.zeros_like, est)

    return Estimator(name, init, reset, step)


def zucchet(objective) -> Estimator:
    """estimator=zucchet: the multi-layer rule of Zucchet et al. 2023."""
    return elementwise_estimator(objective, "zucchet")


def elementwise_memory_bytes(layers, streams: int) -> int:
    """Bytes the rule holds per member at once for `streams` streams: M_t, I_t and the new
    M_t (3 x k x recurrent parameters per layer, H times that for DENSE leaves) in the
    params' dtype. layers: params or their shapes."""
    total = 0
    for p in layers:
        rec_leaves, flags, _ = _split_leaves(p)
        k, H = _state_shape(p)
        total += 3 * k * sum(a.size * a.dtype.itemsize * (H if _is_dense(f) else 1) for a, f in zip(rec_leaves, flags))
    return int(streams * total)
