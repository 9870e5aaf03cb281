"""A fused-gate LSTM layer as pure functions, with a hand-written backward pass.

Gates i, f, g, o (no peepholes), as in the source text's LSTM chapters:

    z_t = x_t @ Wx + h_{t-1} @ Wh + b                      [B, 4H]
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c_t = f * c_{t-1} + i * g;     h_t = o * tanh(c_t)

`lstm_scan` runs the recurrence with `jax.lax.scan` over time (time-major arrays).
Its VJP is custom: the reverse scan carries only (dh, dc) and emits the gate
gradients dz_t; the weight gradients are then one contraction over time and batch,
[dWx; dWh; db] = sum_{t,b} [x_tb, h_{t-1,b}, 1]^T dz_tb (einsum "tbk,tbg->kg", `contract_lead`;
with a bf16 compute dtype dWx and dWh are two and db a float32 sum), with T and B kept as separate
axes: split along B (a mesh's data axis) each device contracts its own streams and
only the [D, 4H] result is all-reduced (a [T*B, D] reshape would gather the
activations of every device instead). Gradients are checked against autodiff of `lstm_scan_reference`
and against central finite differences in tests/.

On the CPU from 256 units (jaxdl.models.products.weight_left) the per-step recurrent
products run weight-left, h_{t-1} Wh as (Wh^T h_{t-1}^T)^T and dz_t Wh^T as (Wh dz_t^T)^T,
the form XLA:CPU runs fastest with B = 32 rows; the state and everything stored stay [B, .].

An optional mask [T, B] holds the state where it is 0 (padding, TBPTT windows
that begin before the stream): h_t = h_{t-1}, c_t = c_{t-1} there.

compute_dtype=bfloat16 (mixed precision): every matmul, forward and backward, takes
bf16 inputs and accumulates in float32 (`preferred_element_type`); the parameters
(master weights), the gate math, the cell state, the carry and all gradients stay
float32. compute_dtype=None or float32 is the plain float32 (or float64) path.

remat="sqrt" (or a segment length) recomputes activations in the backward pass
instead of storing them: jaxdl.models.remat, memory O(sqrt(T)) in place of O(T).

Under jax.vmap over P members (a population), the forward and the backward run their
member rules (custom_vmap): the same recurrence with the member axis leading, every step
written into [P, T, B, .] buffers, and dWx, dWh, db as one batched contraction of
[x_t, h_{t-1}, 1] per member, so XLA transposes no stacked array (tests/test_lstm_members.py).
A vmap over one member (train_loop's default run) drops the member axis and runs the
single model's kernels, weight-left products included.
"""
from __future__ import annotations

from functools import cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

from jaxdl.models.cell import Cell, sequential_only
from jaxdl.models.products import (compute_dtype_of, contract_lead, default_hoist, matmul, member_contract,
                                   member_matmul, step_matmul)
from jaxdl.models.remat import remat_scan, segment_length


class LSTMParams(NamedTuple):
    wx: jax.Array  # [D, 4H] input weights, gate order i, f, g, o
    wh: jax.Array  # [H, 4H] recurrent weights
    b: jax.Array   # [4H]


def lstm_init(key, in_dim: int, hidden: int, forget_bias: float = 1.0,
              dtype=jnp.float32, candidate_init: str = "orthogonal") -> LSTMParams:
    """Glorot-uniform input weights, orthogonal recurrent weights (as Keras; with
    candidate_init="identity" the candidate block g of Wh starts as the identity, as in
    Cooijmans et al. 2017, Sec. 5.1), zero bias except the forget gate (`forget_bias`,
    1 by default)."""
    if in_dim < 1 or hidden < 1:
        raise ValueError(f"LSTM sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
    if candidate_init not in ("orthogonal", "identity"):
        raise ValueError(f"candidate_init must be 'orthogonal' or 'identity', got {candidate_init!r} "
                         "(set model.candidate_init)")
    kx, kh = jax.random.split(key)
    wx = jax.nn.initializers.glorot_uniform()(kx, (in_dim, 4 * hidden), dtype)
    blocks = [jax.nn.initializers.orthogonal()(k, (hidden, hidden), dtype) for k in jax.random.split(kh, 4)]
    if candidate_init == "identity":
        blocks[2] = jnp.eye(hidden, dtype=dtype)
    wh = jnp.concatenate(blocks, axis=1)
    b = jnp.zeros((4 * hidden,), dtype).at[hidden:2 * hidden].set(forget_bias)
    return LSTMParams(wx, wh, b)


def zero_carry(batch: int, hidden: int, dtype=jnp.float32):
    """The initial state (h0, c0), each [B, H]."""
    z = jnp.zeros((batch, hidden), dtype)
    return (z, z)


def _gates(z):
    """Pre-activations [..., 4H] -> activations i, f, g, o (each [..., H])."""
    i, f, g, o = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def lstm_scan_reference(params: LSTMParams, xs, carry, mask=None, compute_dtype=None):
    """The same recurrence written plainly, differentiated by autodiff.

    xs [T, B, D], carry ((h0, c0) each [B, H]), mask [T, B] or None
    -> (hs [T, B, H], (hT, cT)). Used as the oracle in tests and benchmarks.
    compute_dtype casts the matmul inputs as lstm_scan does."""
    cd = compute_dtype_of(compute_dtype)

    def step(hc, inp):
        h, c = hc
        x, m = inp
        i, f, g, o = _gates(matmul(x, params.wx, cd) + matmul(h, params.wh, cd) + params.b)
        c2 = f * c + i * g
        h2 = o * jnp.tanh(c2)
        if m is not None:
            m = m[:, None]
            h2, c2 = jnp.where(m, h2, h), jnp.where(m, c2, c)
        return (h2, c2), h2
    carry, hs = jax.lax.scan(step, carry, (xs, mask))
    return hs, carry


def _cell(z, c):
    """One step's gate math: pre-activations z [..., 4H], c_{t-1} [..., H] ->
    (h_t, c_t, (i, f, g, o))."""
    i, f, g, o = _gates(z)
    c2 = f * c + i * g
    return o * jnp.tanh(c2), c2, (i, f, g, o)


def _cell_grad(dh, dc, c, cp, acts):
    """The step's backward: dL/dh_t (all paths), dL/dc_t (from step t+1), c_t, c_{t-1}
    and the gates -> (dz [..., 4H], the c_{t-1} part of dL/dc_{t-1})."""
    i, f, g, o = acts
    tc = jnp.tanh(c)
    dc_tot = dc + dh * o * (1.0 - tc * tc)
    dz = jnp.concatenate([
        dc_tot * g * i * (1.0 - i),      # d z_i
        dc_tot * cp * f * (1.0 - f),     # d z_f
        dc_tot * i * (1.0 - g * g),      # d z_g
        dh * tc * o * (1.0 - o),         # d z_o
    ], axis=-1)
    return dz, dc_tot * f


def _weights(params, cd):
    """wx, wh cast once, outside the loop (no-op without a compute dtype)."""
    return (params.wx, params.wh) if cd is None else (params.wx.astype(cd), params.wh.astype(cd))


def _forward(params, xs, h0, c0, mask, hoist, cd):
    """Forward scan; returns outputs, final carry and what the backward pass needs:
    (hs [T, B, H], (hT, cT), (cs [T, B, H], (i, f, g, o) each [T, B, H]))."""
    wx, wh = _weights(params, cd)
    if hoist:  # one [T, B, D] @ [D, 4H] product outside the loop (T and B kept apart)
        xz = matmul(xs, wx, cd) + params.b
    else:
        xz = xs
    rec = step_matmul(wh, cd)    # h @ Wh; weight-left, (Wh^T h^T)^T, from 256 units on the CPU

    def step(hc, inp):
        h, c = hc
        x, m = inp
        z = (x if hoist else matmul(x, wx, cd) + params.b) + rec(h)
        h2, c2, acts = _cell(z, c)
        if m is not None:
            mm = m[:, None]
            h2, c2 = jnp.where(mm, h2, h), jnp.where(mm, c2, c)
        # the gates are stacked as four separate outputs: no concatenated copy per step
        return (h2, c2), (h2, c2, acts)

    (hT, cT), (hs, cs, acts) = jax.lax.scan(step, (h0, c0), (xz, mask))
    return hs, (hT, cT), (cs, acts)


def _backward(hoist, cd, res, cot):
    """The reverse scan over (dh, dc), then the weight gradients as contractions over
    time and batch. res: what _forward kept; cot: (dhs [T, B, H], (dhT, dcT))."""
    params, xs, h0, c0, mask, hs, cs, acts = res
    dhs, (dhT, dcT) = cot
    c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)       # [T, B, H]
    wh = params.wh if cd is None else params.wh.astype(cd)
    rec = step_matmul(wh.T, cd)  # dz Wh^T ([4H, H] materialised once); weight-left, (Wh dz^T)^T

    def step(dhc, inp):
        dh, dc = dhc
        dh_out, c, cp, a, m = inp
        dh = dh + dh_out
        dz, dc_prev = _cell_grad(dh, dc, c, cp, a)
        dh_prev = rec(dz)
        if m is not None:  # a held step passes (dh, dc) straight through
            mm = m[:, None]
            dz = jnp.where(mm, dz, 0.0)
            dh_prev = jnp.where(mm, dh_prev, dh)
            dc_prev = jnp.where(mm, dc_prev, dc)
        return (dh_prev, dc_prev), dz

    (dh0, dc0), dzs = jax.lax.scan(step, (dhT, dcT), (dhs, cs, c_prev, acts, mask), reverse=True)
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)          # [T, B, H]
    if cd is None:   # one contraction of [x_t, h_{t-1}, 1] gives [dWx; dWh; db]: dz is read once
        ones = jnp.ones(h_prev.shape[:2] + (1,), h_prev.dtype)
        g = contract_lead(jnp.concatenate([xs.astype(h_prev.dtype), h_prev, ones], axis=-1), dzs, cd)
        D, H = xs.shape[-1], h_prev.shape[-1]
        dwx, dwh, db = g[:D].astype(params.wx.dtype), g[D:D + H], g[D + H]   # [D, 4H], [H, 4H], [4H]
    else:            # bf16 products; the bias gradient stays a float32 sum
        dwx = contract_lead(xs, dzs, cd)                              # [D, 4H]
        dwh = contract_lead(h_prev, dzs, cd)                          # [H, 4H]
        db = dzs.sum(axis=(0, 1))
    dxs = matmul(dzs, params.wx.T, cd).astype(xs.dtype)            # [T, B, D]
    dmask = None if mask is None else jnp.zeros_like(mask)
    return LSTMParams(dwx, dwh, db), dxs, dh0, dc0, dmask


# ---------------------------------------------------------------- a population's members
# Under jax.vmap over members (a population, jaxdl.train.population), the time-major
# scans above would stack every step's outputs as [T, P, B, H]; the weight gradients then
# contract per member over (T, B) with the member axis in the middle, and XLA transposes
# each stacked array to [P, T, B, H] before every contraction (and the shared input's
# product x_t @ Wx to [P, B, 4H] on every step). The member rules below (custom_vmap)
# run the same recurrence with the member axis leading: every step writes its outputs
# into [P, T, B, H] buffers at t, and the products are batched dots over P.

def _lead(P, a, batched):
    """a with a leading member axis of size P (broadcast where a is shared)."""
    return a if batched else jnp.broadcast_to(a, (P,) + a.shape)


def _at(a, t):
    """a[:, t] of a member-major [P, T, ...] array, t traced."""
    return jax.lax.dynamic_index_in_dim(a, t, axis=1, keepdims=False)


def _put(buf, v, t):
    return jax.lax.dynamic_update_index_in_dim(buf, v, t, axis=1)


def _step_of(a, batched, t, P):
    """Step t of a time-major input: [P, B, ...] from a batched [P, T, B, ...] or a
    shared [T, B, ...] (broadcast)."""
    if batched:
        return _at(a, t)
    a_t = jax.lax.dynamic_index_in_dim(a, t, axis=0, keepdims=False)
    return jnp.broadcast_to(a_t, (P,) + a_t.shape)


def _members_forward(P, batched, params, xs, h0, c0, mask, hoist, cd):
    """_forward for P members at once; every output member-major ([P, T, B, H], ...)."""
    bp, bx, bh, bc, bm = batched
    params = jax.tree.map(partial(_lead, P), params, bp)
    h0, c0 = _lead(P, h0, bh), _lead(P, c0, bc)
    T = xs.shape[1] if bx else xs.shape[0]
    wx, wh = _weights(params, cd)
    b = params.b[:, None, :]                                        # [P, 1, 4H]
    if hoist:
        xz = member_matmul(_lead(P, xs, bx), wx, cd) + params.b[:, None, None]   # [P, T, B, 4H]

    def body(t, carry):
        h, c, bufs = carry
        x = _at(xz, t) if hoist else member_matmul(_step_of(xs, bx, t, P), wx, cd) + b
        h2, c2, acts = _cell(x + member_matmul(h, wh, cd), c)
        if mask is not None:
            mm = _step_of(mask, bm, t, P)[..., None]
            h2, c2 = jnp.where(mm, h2, h), jnp.where(mm, c2, c)
        return h2, c2, tuple(_put(buf, v, t) for buf, v in zip(bufs, (h2, c2) + acts))

    bufs = tuple(jnp.zeros((P, T) + h0.shape[1:], h0.dtype) for _ in range(6))
    hT, cT, (hs, cs, *acts) = jax.lax.fori_loop(0, T, body, (h0, c0, bufs))
    out = (hs, (hT, cT), (cs, tuple(acts)))
    return out, jax.tree.map(lambda _: True, out)


def _members_backward(P, batched, res, cot, hoist, cd):
    """_backward for P members at once: dz is written member-major, so each member's
    weight gradient is one contraction of contiguous [T*B, .] rows."""
    (bp, bx, bh0, bc0, bm, bhs, bcs, bacts), (bdhs, (bdhT, bdcT)) = batched
    params, xs, h0, c0, mask, hs, cs, acts = res
    dhs, (dhT, dcT) = cot
    lead = partial(_lead, P)
    params = jax.tree.map(lead, params, bp)
    h0, c0, hs, cs = lead(h0, bh0), lead(c0, bc0), lead(hs, bhs), lead(cs, bcs)
    acts = tuple(lead(a, b) for a, b in zip(acts, bacts))
    dhs, dhT, dcT = lead(dhs, bdhs), lead(dhT, bdhT), lead(dcT, bdcT)
    T = hs.shape[1]
    wh_t = jnp.swapaxes(params.wh, 1, 2)                            # [P, 4H, H]
    wh_t = wh_t if cd is None else wh_t.astype(cd)

    def body(k, carry):
        t = T - 1 - k
        dh, dc, dzs = carry
        dh = dh + _at(dhs, t)
        cp = jnp.where(t > 0, _at(cs, jnp.maximum(t - 1, 0)), c0)
        dz, dc_prev = _cell_grad(dh, dc, _at(cs, t), cp, tuple(_at(a, t) for a in acts))
        dh_prev = member_matmul(dz, wh_t, cd)
        if mask is not None:
            mm = _step_of(mask, bm, t, P)[..., None]
            dz = jnp.where(mm, dz, 0.0)
            dh_prev = jnp.where(mm, dh_prev, dh)
            dc_prev = jnp.where(mm, dc_prev, dc)
        return dh_prev, dc_prev, _put(dzs, dz, t)

    dzs = jnp.zeros(hs.shape[:3] + (params.wh.shape[-1],), hs.dtype)   # [P, T, B, 4H]
    dh0, dc0, dzs = jax.lax.fori_loop(0, T, body, (dhT, dcT, dzs))
    h_prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)    # [P, T, B, H]
    x = lead(xs, bx)
    if cd is None:   # one contraction of [x_t, h_{t-1}, 1] gives [dWx; dWh; db]
        ones = jnp.ones(h_prev.shape[:3] + (1,), h_prev.dtype)
        g = member_contract(jnp.concatenate([x.astype(h_prev.dtype), h_prev, ones], axis=-1), dzs, cd)
        D, H = x.shape[-1], h_prev.shape[-1]
        dwx, dwh, db = g[:, :D].astype(params.wx.dtype), g[:, D:D + H], g[:, D + H]
    else:            # bf16 products; the bias gradient stays a float32 sum
        dwx = member_contract(x, dzs, cd)                          # [P, D, 4H]
        dwh = member_contract(h_prev, dzs, cd)                     # [P, H, 4H]
        db = dzs.sum(axis=(1, 2))
    dxs = member_matmul(dzs, jnp.swapaxes(params.wx, 1, 2), cd).astype(xs.dtype)   # [P, T, B, D]
    dmask = None if mask is None else jnp.zeros_like(mask)
    out = (LSTMParams(dwx, dwh, db), dxs, dh0, dc0, dmask)
    return out, (LSTMParams(True, True, True), True, True, True, None if mask is None else bm)


def _one_member(f, batched, args):
    """f (the single-model kernel) on the one member of a vmap of size 1: the member axis
    is dropped from the batched arguments and put back on every output, so a run of one
    member (train_loop always vmaps over members) runs exactly the single model's
    program (its per-step products weight-left on the CPU from 256 units)."""
    args = jax.tree.map(lambda a, b: a[0] if b else a, tuple(args), tuple(batched))
    out = jax.tree.map(lambda a: a[None], f(*args))
    return out, jax.tree.map(lambda _: True, out)


@cache
def _kernels(hoist: bool, cd):
    """(forward, backward) for one (hoist, compute dtype): _forward and _backward, with
    the member rules as their vmap (the single-model kernels for one member)."""
    def fwd(params, xs, h0, c0, mask):
        return _forward(params, xs, h0, c0, mask, hoist, cd)

    def bwd(res, cot):
        return _backward(hoist, cd, res, cot)

    forward = custom_vmap(fwd)
    forward.def_vmap(lambda P, batched, *args: _one_member(fwd, batched, args) if P == 1
                     else _members_forward(P, batched, *args, hoist, cd))
    backward = custom_vmap(bwd)
    backward.def_vmap(lambda P, batched, res, cot: _one_member(bwd, batched, (res, cot)) if P == 1
                      else _members_backward(P, batched, res, cot, hoist, cd))
    return forward, backward


@partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _lstm_core(params, xs, h0, c0, mask, hoist, cd):
    hs, carry, _ = _kernels(hoist, cd)[0](params, xs, h0, c0, mask)
    return hs, carry


def _lstm_fwd(params, xs, h0, c0, mask, hoist, cd):
    hs, carry, (cs, acts) = _kernels(hoist, cd)[0](params, xs, h0, c0, mask)
    return (hs, carry), (params, xs, h0, c0, mask, hs, cs, acts)


def _lstm_bwd(hoist, cd, res, cot):
    return _kernels(hoist, cd)[1](res, cot)


_lstm_core.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_scan(params: LSTMParams, xs, carry, mask=None, hoist: bool | None = None,
              compute_dtype=None, remat=None):
    """Run one LSTM layer over time.

    params: LSTMParams; xs [T, B, D] (time-major); carry (h0, c0) each [B, H];
    mask [T, B] (1 = real step, 0 = hold state) or None;
    hoist: the input projection outside the loop (None: default_hoist());
    compute_dtype: None | "float32" | "bfloat16" (bf16 matmul inputs, f32 accumulation);
    remat: None | "none" | "sqrt" | a segment length (jaxdl.models.remat).
    Returns (hs [T, B, H], (hT, cT)). Differentiable in params, xs and carry.
    """
    if xs.ndim != 3:
        raise ValueError(f"lstm_scan expects time-major xs [T, B, D], got shape {xs.shape}")
    if xs.shape[-1] != params.wx.shape[0]:
        raise ValueError(
            f"input has {xs.shape[-1]} features but the LSTM was built for {params.wx.shape[0]}; "
            "reshape the data to [samples, time steps, features] with the right feature count")
    h0, c0 = carry
    if h0.shape != (xs.shape[1], params.wh.shape[0]):
        raise ValueError(
            f"state has shape {h0.shape} but the batch needs {(xs.shape[1], params.wh.shape[0])}; "
            "a stateful model keeps its batch size: use the batch size it was built with or reset the state")
    cd = compute_dtype_of(compute_dtype)
    if mask is not None:
        mask = mask.astype(h0.dtype)
    if hoist is None:
        hoist = default_hoist()
    seg = segment_length(xs.shape[0], remat)
    if seg is None:
        return _lstm_core(params, xs, h0, c0, mask, bool(hoist), cd)

    def segment(c, x, m):
        return _lstm_core(params, x, c[0], c[1], m, bool(hoist), cd)
    return remat_scan(segment, (h0, c0), xs, mask, seg)


def lstm_step(params: LSTMParams, carry, x, rec=jnp.matmul):
    """One unmasked step (h, c), x [B, D] -> (h', c'): the transition the online
    gradient estimators differentiate (jaxdl.estimators). rec(h, wh) computes the
    recurrent product h @ wh (SnAp-1 swaps in one with the same value whose derivative
    in h keeps only each unit's own columns)."""
    h, c = carry
    i, f, g, o = _gates(x @ params.wx + rec(h, params.wh) + params.b)
    c2 = f * c + i * g
    return o * jnp.tanh(c2), c2


def _c_stage(params: LSTMParams, carry, x, rec=jnp.matmul):
    """c_t = f * c_{t-1} + i * g from (h_{t-1}, c_{t-1}) (all four gates' columns, so a
    derivative in the params keeps their shape: o's columns get zero)."""
    h, c = carry
    i, f, g, _ = _gates(x @ params.wx + rec(h, params.wh) + params.b)
    return (f * c + i * g,)


def _h_stage(params: LSTMParams, carry, x, rec=jnp.matmul):
    """h_t = o * tanh(c_t) from (h_{t-1}, c_t) (the pre-activations as _c_stage's: one
    product for both stages once XLA removes the common subexpression)."""
    h, c2 = carry
    *_, o = _gates(x @ params.wx + rec(h, params.wh) + params.b)
    return (o * jnp.tanh(c2),)


def _init(key, in_dim: int, hidden: int, dtype=jnp.float32, forget_bias: float = 1.0,
          candidate_init: str = "orthogonal") -> LSTMParams:
    return lstm_init(key, in_dim, hidden, forget_bias, dtype, candidate_init)


CELL = Cell(
    name="lstm", init=_init,
    carry=lambda params, batch: zero_carry(batch, params.wh.shape[0], params.wh.dtype),
    scan=sequential_only("lstm", lambda params, xs, carry, mask=None, hoist=None, compute_dtype=None:
                         lstm_scan(params, xs, carry, mask, hoist, compute_dtype)),
    step=lstm_step, output=lambda carry: carry[0], reference=lstm_scan_reference,
    params=LSTMParams, options=("forget_bias", "candidate_init"), gates=4, stages=(((1,), _c_stage), ((0,), _h_stage)))
