"""A fused-gate LSTM layer as pure functions, with a hand-written backward pass.

Gates i, f, g, o (no peepholes), as in the source text's LSTM chapters:

    z_t = x_t @ Wx + h_{t-1} @ Wh + b                      [B, 4H]
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c_t = f * c_{t-1} + i * g;     h_t = o * tanh(c_t)

`lstm_scan` runs the recurrence with `jax.lax.scan` over time (time-major arrays).
Its VJP is custom: the reverse scan carries only (dh, dc) and emits the gate
gradients dz_t; the weight gradients are then two contractions over time and batch,
dWx = sum_{t,b} x_tb^T dz_tb (einsum "tbd,tbg->dg", `contract_lead`), with T and B kept as separate
axes: split along B (a mesh's data axis) each device contracts its own streams and
only the [D, 4H] result is all-reduced (a [T*B, D] reshape would gather the
activations of every device instead). Gradients are checked against autodiff of `lstm_scan_reference`
and against central finite differences in tests/.

An optional mask [T, B] holds the state where it is 0 (padding, TBPTT windows
that begin before the stream): h_t = h_{t-1}, c_t = c_{t-1} there.

compute_dtype=bfloat16 (mixed precision): every matmul, forward and backward, takes
bf16 inputs and accumulates in float32 (`preferred_element_type`); the parameters
(master weights), the gate math, the cell state, the carry and all gradients stay
float32. compute_dtype=None or float32 is the plain float32 (or float64) path.

remat="sqrt" (or a segment length) recomputes activations in the backward pass
instead of storing them: jaxdl.models.remat, memory O(sqrt(T)) in place of O(T).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import Cell
from jaxdl.models.remat import remat_scan, segment_length


class LSTMParams(NamedTuple):
    wx: jax.Array  # [D, 4H] input weights, gate order i, f, g, o
    wh: jax.Array  # [H, 4H] recurrent weights
    b: jax.Array   # [4H]


def lstm_init(key, in_dim: int, hidden: int, forget_bias: float = 1.0,
              dtype=jnp.float32) -> LSTMParams:
    """Glorot-uniform input weights, orthogonal recurrent weights (as Keras),
    zero bias except the forget gate (`forget_bias`, 1 by default)."""
    if in_dim < 1 or hidden < 1:
        raise ValueError(f"LSTM sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
    kx, kh = jax.random.split(key)
    wx = jax.nn.initializers.glorot_uniform()(kx, (in_dim, 4 * hidden), dtype)
    wh = jnp.concatenate(
        [jax.nn.initializers.orthogonal()(k, (hidden, hidden), dtype)
         for k in jax.random.split(kh, 4)], axis=1)
    b = jnp.zeros((4 * hidden,), dtype).at[hidden:2 * hidden].set(forget_bias)
    return LSTMParams(wx, wh, b)


def zero_carry(batch: int, hidden: int, dtype=jnp.float32):
    """The initial state (h0, c0), each [B, H]."""
    z = jnp.zeros((batch, hidden), dtype)
    return (z, z)


COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype_of(name):
    """'float32' | 'bfloat16' | a dtype | None -> the matmul input dtype, or None for
    no casting (float32 means no casting: the parameters' own dtype is used)."""
    if name is None:
        return None
    d = jnp.dtype(name)
    if d == jnp.float32:
        return None
    if d != jnp.bfloat16:
        raise ValueError(f"compute dtype must be one of {COMPUTE_DTYPES}, got {name!r} "
                         "(set model.dtype=float32 or model.dtype=bfloat16)")
    return d


def matmul(a, w, cd):
    """a [..., K] @ w [K, N]. cd None: in the operands' dtype; cd bf16: bf16 inputs,
    accumulated and returned in float32 (float64 where a is float64)."""
    if cd is None:
        return a @ w
    acc = jnp.result_type(a.dtype, jnp.float32)
    if jax.default_backend() == "cpu":
        # XLA's CPU dot has no BF16 x BF16 -> F32 kernel for every shape ("Unsupported element
        # type for DotThunk"). Products of bf16 values are exact in f32, so rounding the inputs
        # to bf16 and multiplying in f32 computes the same thing.
        return jnp.matmul(a.astype(cd).astype(acc), w.astype(cd).astype(acc))
    return jnp.matmul(a.astype(cd), w.astype(cd), preferred_element_type=acc)


def contract_lead(a, b, cd):
    """sum over the leading axes of a [..., M] and b [..., N] -> [M, N], e.g. over time and
    batch: sum_{t,b} a[t, b, :]^T b[t, b, :] (einsum "tbm,tbn->mn"), with matmul's dtype
    rule (cd None: the operands' dtype; cd bf16: bf16 inputs, float32 accumulation).
    One dot_general contracting dims (0, ..., n-2) in order: on one device the operands
    are read as [T*B, M] without a copy (jnp.einsum orders them (b, t), which costs a
    transpose); split along B on a mesh, each device contracts its own rows and only
    the [M, N] partial sums are all-reduced."""
    lead = tuple(range(a.ndim - 1))
    dims = ((lead, lead), ((), ()))
    if cd is None:
        return jax.lax.dot_general(a, b, dims)
    acc = jnp.result_type(a.dtype, jnp.float32)
    if jax.default_backend() == "cpu":   # see matmul: bf16-rounded inputs, f32 product
        return jax.lax.dot_general(a.astype(cd).astype(acc), b.astype(cd).astype(acc), dims)
    return jax.lax.dot_general(a.astype(cd), b.astype(cd), dims, preferred_element_type=acc)


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


def _forward(params, xs, h0, c0, mask, hoist, cd):
    """Forward scan; returns outputs, final carry and what the backward pass needs."""
    # weights cast once, outside the loop (no-op without a compute dtype)
    wx, wh = (params.wx, params.wh) if cd is None else (params.wx.astype(cd), params.wh.astype(cd))
    if hoist:  # one [T, B, D] @ [D, 4H] product outside the loop (T and B kept apart)
        xz = matmul(xs, wx, cd) + params.b
    else:
        xz = xs

    def step(hc, inp):
        h, c = hc
        x, m = inp
        z = (x if hoist else matmul(x, wx, cd) + params.b) + matmul(h, wh, cd)
        i, f, g, o = _gates(z)
        c2 = f * c + i * g
        h2 = o * jnp.tanh(c2)
        if m is not None:
            mm = m[:, None]
            h2, c2 = jnp.where(mm, h2, h), jnp.where(mm, c2, c)
        # the gates are stacked as four separate outputs: no concatenated copy per step
        return (h2, c2), (h2, c2, (i, f, g, o))

    (hT, cT), (hs, cs, acts) = jax.lax.scan(step, (h0, c0), (xz, mask))
    return hs, (hT, cT), (cs, acts)


@partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _lstm_core(params, xs, h0, c0, mask, hoist, cd):
    hs, carry, _ = _forward(params, xs, h0, c0, mask, hoist, cd)
    return hs, carry


def _lstm_fwd(params, xs, h0, c0, mask, hoist, cd):
    hs, carry, (cs, acts) = _forward(params, xs, h0, c0, mask, hoist, cd)
    return (hs, carry), (params, xs, h0, c0, mask, hs, cs, acts)


def _lstm_bwd(hoist, cd, res, cot):
    params, xs, h0, c0, mask, hs, cs, acts = res
    dhs, (dhT, dcT) = cot
    c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)       # [T, B, H]
    wh_t = params.wh.T if cd is None else params.wh.T.astype(cd)  # [4H, H], materialised once

    def step(dhc, inp):
        dh, dc = dhc
        dh_out, c, cp, (i, f, g, o), m = inp
        dh = dh + dh_out
        tc = jnp.tanh(c)
        dc_tot = dc + dh * o * (1.0 - tc * tc)
        dz = jnp.concatenate([
            dc_tot * g * i * (1.0 - i),      # d z_i
            dc_tot * cp * f * (1.0 - f),     # d z_f
            dc_tot * i * (1.0 - g * g),      # d z_g
            dh * tc * o * (1.0 - o),         # d z_o
        ], axis=-1)
        dh_prev = matmul(dz, wh_t, cd)
        dc_prev = dc_tot * f
        if m is not None:  # a held step passes (dh, dc) straight through
            mm = m[:, None]
            dz = jnp.where(mm, dz, 0.0)
            dh_prev = jnp.where(mm, dh_prev, dh)
            dc_prev = jnp.where(mm, dc_prev, dc)
        return (dh_prev, dc_prev), dz

    (dh0, dc0), dzs = jax.lax.scan(step, (dhT, dcT), (dhs, cs, c_prev, acts, mask), reverse=True)
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)          # [T, B, H]
    dwx = contract_lead(xs, dzs, cd)                              # [D, 4H]
    dwh = contract_lead(h_prev, dzs, cd)                          # [H, 4H]
    db = dzs.sum(axis=(0, 1))
    dxs = matmul(dzs, params.wx.T, cd).astype(xs.dtype)            # [T, B, D]
    dmask = None if mask is None else jnp.zeros_like(mask)
    return LSTMParams(dwx, dwh, db), dxs, dh0, dc0, dmask


_lstm_core.defvjp(_lstm_fwd, _lstm_bwd)


def default_hoist() -> bool:
    """Hoist the input projection out of the loop on accelerators, keep it inside on CPU
    (measured in experiments/bench_lstm.py: on 2 CPU cores the per-step matmul wins)."""
    return jax.default_backend() != "cpu"


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


def _init(key, in_dim: int, hidden: int, dtype=jnp.float32, forget_bias: float = 1.0) -> LSTMParams:
    return lstm_init(key, in_dim, hidden, forget_bias, dtype)


CELL = Cell(
    name="lstm", init=_init,
    carry=lambda params, batch: zero_carry(batch, params.wh.shape[0], params.wh.dtype),
    scan=lambda params, xs, carry, mask=None, hoist=None, compute_dtype=None:
        lstm_scan(params, xs, carry, mask, hoist, compute_dtype),
    step=lstm_step, output=lambda carry: carry[0], reference=lstm_scan_reference,
    params=LSTMParams, options=("forget_bias",), gates=4)
