"""A fused-gate GRU layer as pure functions: the cuDNN / PyTorch form, with a
hand-written backward pass.

Gates r, z, n in that order (torch.nn.GRU's order; Keras `GRU(reset_after=True)`,
cuDNN's GRU): the reset gate multiplies the recurrent product, bias included,
not the state before it (Cho et al. 2014 reset the state first; that is Keras'
reset_after=False, which this module does not implement):

    a_t = x_t @ Wx + bx                      [B, 3H]   (the input part, hoistable)
    u_t = h_{t-1} @ Wh + bh                  [B, 3H]   (the recurrent part)
    r = sigmoid(a_r + u_r);   z = sigmoid(a_z + u_z)
    n = tanh(a_n + r * u_n)
    h_t = (1 - z) * n + z * h_{t-1}

Two biases (bx, bh), as torch and cuDNN, because bh_n sits inside r * (...): it is
not interchangeable with bx_n. Every parameter leaf's last axis is 3H (gate-major),
so column j feeds unit j % H.

`gru_scan` runs the recurrence with `jax.lax.scan` over time (time-major). Its
VJP is custom: the reverse scan carries only dh and emits the pre-activation
gradients da_t (and du_t, which differs from da_t only in the n block, by r); the
weight gradients are then large matmuls over all T*B rows after the scan. On this
CPU it is faster than autodiff of the same forward scan (experiments/bench_cells.py;
docs/cells.md gives the numbers). Gradients are checked against autodiff of
`gru_scan_reference`, central differences (式6) and torch.nn.GRU in
tests/test_cells.py.

mask [T, B] (1 = real step, 0 = hold the state) holds h where it is 0.
hoist: the input projection a_t for all steps as one [T*B, D] @ [D, 3H] matmul
outside the loop. compute_dtype=bfloat16: every matmul, forward and backward,
takes bf16 inputs and accumulates in float32 (jaxdl.models.lstm.matmul); params,
gate math, state and gradients stay float32.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import Cell, sequential_only
from jaxdl.models.products import matmul
from jaxdl.models.remat import remat_scan, segment_length
from jaxdl.models.scan_args import check_scan_args, one_state_reference


class GRUParams(NamedTuple):
    wx: jax.Array  # [D, 3H] input weights, gate order r, z, n
    wh: jax.Array  # [H, 3H] recurrent weights
    bx: jax.Array  # [3H] input bias
    bh: jax.Array  # [3H] recurrent bias (bh_n is multiplied by r)


def gru_init(key, in_dim: int, hidden: int, dtype=jnp.float32) -> GRUParams:
    """Keras' GRU initialisation: glorot-uniform Wx, an orthogonal [H, H] block of Wh
    per gate, zero biases."""
    if in_dim < 1 or hidden < 1:
        raise ValueError(f"GRU sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
    kx, kh = jax.random.split(key)
    wx = jax.nn.initializers.glorot_uniform()(kx, (in_dim, 3 * hidden), dtype)
    wh = jnp.concatenate(
        [jax.nn.initializers.orthogonal()(k, (hidden, hidden), dtype)
         for k in jax.random.split(kh, 3)], axis=1)
    z = jnp.zeros((3 * hidden,), dtype)
    return GRUParams(wx, wh, z, z)


def zero_carry(batch: int, hidden: int, dtype=jnp.float32):
    """The initial state (h0,): a 1-tuple of [B, H]."""
    return (jnp.zeros((batch, hidden), dtype),)


def _cell(a, u, h):
    """Input part a [B, 3H], recurrent part u [B, 3H] (biases included), state h
    [B, H] -> (h', (r, z, n, u_n)), each [B, H]."""
    ar, az, an = jnp.split(a, 3, axis=-1)
    ur, uz, un = jnp.split(u, 3, axis=-1)
    r = jax.nn.sigmoid(ar + ur)
    z = jax.nn.sigmoid(az + uz)
    n = jnp.tanh(an + r * un)
    return n + z * (h - n), (r, z, n, un)


def _step(params: GRUParams, carry, x, rec, cd):
    (h,) = carry
    h2, _ = _cell(matmul(x, params.wx, cd) + params.bx, rec(h, params.wh) + params.bh, h)
    return (h2,)


def gru_step(params: GRUParams, carry, x, rec=jnp.matmul):
    """One unmasked step (h,), x [B, D] -> (h',). rec(h, wh) computes the recurrent
    product h @ wh and is the only place it is computed (the online estimators swap
    in their own, jaxdl.estimators)."""
    return _step(params, carry, x, rec, None)


# the plain lax.scan of the step, differentiated by autodiff: the oracle of the tests
gru_scan_reference = one_state_reference(_step)


def _forward(params, xs, h0, mask, hoist, cd):
    """Forward scan: outputs hs [T, B, H], final h and the backward pass's residuals
    (r, z, n, u_n, each [T, B, H])."""
    T, B, _ = xs.shape
    wx, wh = (params.wx, params.wh) if cd is None else (params.wx.astype(cd), params.wh.astype(cd))
    if hoist:
        a_all = (matmul(xs.reshape(T * B, -1), wx, cd) + params.bx).reshape(T, B, -1)
    else:
        a_all = xs

    def step(h, inp):
        x, m = inp
        a = x if hoist else matmul(x, wx, cd) + params.bx
        h2, acts = _cell(a, matmul(h, wh, cd) + params.bh, h)
        if m is not None:
            h2 = jnp.where(m[:, None] != 0, h2, h)
        return h2, (h2, acts)

    hT, (hs, acts) = jax.lax.scan(step, h0, (a_all, mask))
    return hs, hT, acts


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _gru_core(params, xs, h0, mask, hoist, cd):
    hs, hT, _ = _forward(params, xs, h0, mask, hoist, cd)
    return hs, hT


def _gru_fwd(params, xs, h0, mask, hoist, cd):
    hs, hT, acts = _forward(params, xs, h0, mask, hoist, cd)
    return (hs, hT), (params, xs, h0, mask, hs, acts)


def _gru_bwd(hoist, cd, res, cot):
    """Reverse scan over dh only; for h' = n + z (h - n):
        dn = dh (1 - z),  da_n = dn (1 - n^2),  du_n = r da_n
        da_z = du_z = dh (h - n) z (1 - z)
        da_r = du_r = da_n u_n r (1 - r)
        dh_prev = dh z + du @ Wh^T
    then dWx = X^T dA, dWh = H_prev^T dU, dbx = sum dA, dbh = sum dU over T*B rows."""
    params, xs, h0, mask, hs, acts = res
    dhs, dhT = cot
    T, B, D = xs.shape
    H = h0.shape[-1]
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)          # [T, B, H]
    wh_t = params.wh.T if cd is None else params.wh.T.astype(cd)  # [3H, H]

    def step(dh, inp):
        dh_out, hp, (r, z, n, un), m = inp
        dh = dh + dh_out
        dan = dh * (1.0 - z) * (1.0 - n * n)
        daz = dh * (hp - n) * z * (1.0 - z)
        dar = dan * un * r * (1.0 - r)
        da = jnp.concatenate([dar, daz, dan], axis=-1)
        du = jnp.concatenate([dar, daz, dan * r], axis=-1)
        dh_prev = dh * z + matmul(du, wh_t, cd)
        if m is not None:  # a held step passes dh straight through
            mm = m[:, None] != 0
            da, du = jnp.where(mm, da, 0.0), jnp.where(mm, du, 0.0)
            dh_prev = jnp.where(mm, dh_prev, dh)
        return dh_prev, (da, du)

    dh0, (das, dus) = jax.lax.scan(step, dhT, (dhs, h_prev, acts, mask), reverse=True)
    da2, du2 = das.reshape(T * B, 3 * H), dus.reshape(T * B, 3 * H)
    dwx = matmul(xs.reshape(T * B, D).T, da2, cd)
    dwh = matmul(h_prev.reshape(T * B, H).T, du2, cd)
    dxs = matmul(da2, params.wx.T, cd).reshape(T, B, D).astype(xs.dtype)
    dmask = None if mask is None else jnp.zeros_like(mask)
    return GRUParams(dwx, dwh, da2.sum(axis=0), du2.sum(axis=0)), dxs, dh0, dmask


_gru_core.defvjp(_gru_fwd, _gru_bwd)


def gru_scan(params: GRUParams, xs, carry, mask=None, hoist: bool | None = None,
             compute_dtype=None, remat=None):
    """Run one GRU layer over time.

    params: GRUParams; xs [T, B, D] (time-major); carry (h0 [B, H],);
    mask [T, B] (1 = real step, 0 = hold state) or None;
    hoist: the input projection outside the loop (None: default_hoist());
    compute_dtype: None | "float32" | "bfloat16"; remat: None | "none" | "sqrt" | a
    segment length (jaxdl.models.remat; the stack applies it to the whole stack).
    Returns (hs [T, B, H], (hT,)). Differentiable in params, xs and carry.
    """
    xs, (h0,), mask, cd, hoist = check_scan_args("GRU", params, xs, carry, mask, hoist, compute_dtype)
    seg = segment_length(xs.shape[0], remat)
    if seg is None:
        hs, hT = _gru_core(params, xs, h0, mask, hoist, cd)
        return hs, (hT,)

    def segment(c, x, m):
        hs, hT = _gru_core(params, x, c[0], m, hoist, cd)
        return hs, (hT,)
    return remat_scan(segment, (h0,), xs, mask, seg)


CELL = Cell(
    name="gru", init=gru_init,
    carry=lambda params, batch: zero_carry(batch, params.wh.shape[0], params.wh.dtype),
    scan=sequential_only("gru", gru_scan), step=gru_step, output=lambda carry: carry[0],
    reference=gru_scan_reference, params=GRUParams, options=(), gates=3)
