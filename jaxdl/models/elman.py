"""The Elman RNN (a "simple RNN") as pure functions, with a hand-written backward pass.

    h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b)        Wx [D, H], Wh [H, H], b [H]

(Elman 1990; torch.nn.RNN(nonlinearity="tanh") with its two biases summed into b;
Keras SimpleRNN). One gate block: G = 1, every leaf's last axis is H.

`elman_scan` runs the recurrence with `jax.lax.scan` over time (time-major). Its
VJP is custom: the reverse scan carries only dh and emits da_t = dh_t (1 - h_t^2)
(the outputs h_t are the only residuals); the weight gradients are then large
matmuls over all T*B rows after the scan. On this CPU it is faster than autodiff of
the same forward scan (experiments/bench_cells.py; docs/cells.md gives the numbers).
Gradients are checked against autodiff of `elman_scan_reference`, central
differences (式6) and torch.nn.RNN in tests/test_cells.py.

mask [T, B] (1 = real step, 0 = hold the state) holds h where it is 0.
hoist: x_t @ Wx + b for all steps as one matmul outside the loop.
compute_dtype=bfloat16: bf16 matmul inputs, float32 accumulation, forward and
backward (jaxdl.models.lstm.matmul); params, state and gradients stay float32.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import Cell
from jaxdl.models.lstm import compute_dtype_of, matmul
from jaxdl.models.remat import remat_scan, segment_length
from jaxdl.models.scan_args import check_scan_args


class ElmanParams(NamedTuple):
    wx: jax.Array  # [D, H] input weights
    wh: jax.Array  # [H, H] recurrent weights
    b: jax.Array   # [H]


def elman_init(key, in_dim: int, hidden: int, dtype=jnp.float32) -> ElmanParams:
    """Keras' SimpleRNN initialisation: glorot-uniform Wx, orthogonal Wh, zero bias."""
    if in_dim < 1 or hidden < 1:
        raise ValueError(f"RNN sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
    kx, kh = jax.random.split(key)
    wx = jax.nn.initializers.glorot_uniform()(kx, (in_dim, hidden), dtype)
    wh = jax.nn.initializers.orthogonal()(kh, (hidden, hidden), dtype)
    return ElmanParams(wx, wh, jnp.zeros((hidden,), dtype))


def _step(params: ElmanParams, carry, x, rec, cd):
    (h,) = carry
    return (jnp.tanh(matmul(x, params.wx, cd) + rec(h, params.wh) + params.b),)


def elman_step(params: ElmanParams, carry, x, rec=jnp.matmul):
    """One unmasked step (h,), x [B, D] -> (h',). rec(h, wh) computes the recurrent
    product h @ wh and is the only place it is computed (jaxdl.estimators)."""
    return _step(params, carry, x, rec, None)


def elman_scan_reference(params: ElmanParams, xs, carry, mask=None, compute_dtype=None):
    """The same recurrence as a plain lax.scan of the step, differentiated by autodiff.

    xs [T, B, D], carry (h0 [B, H],), mask [T, B] or None -> (hs [T, B, H], (hT,))."""
    cd = compute_dtype_of(compute_dtype)
    rec = lambda h, w: matmul(h, w, cd)

    def body(c, inp):
        x, m = inp
        c2 = _step(params, c, x, rec, cd)
        if m is not None:
            c2 = (jnp.where(m[:, None].astype(bool), c2[0], c[0]),)
        return c2, c2[0]
    carry, hs = jax.lax.scan(body, carry, (xs, mask))
    return hs, carry


def _forward(params, xs, h0, mask, hoist, cd):
    """Forward scan -> (hs [T, B, H], hT)."""
    T, B, _ = xs.shape
    wx, wh = (params.wx, params.wh) if cd is None else (params.wx.astype(cd), params.wh.astype(cd))
    a_all = (matmul(xs.reshape(T * B, -1), wx, cd) + params.b).reshape(T, B, -1) if hoist else xs

    def step(h, inp):
        x, m = inp
        a = x if hoist else matmul(x, wx, cd) + params.b
        h2 = jnp.tanh(a + matmul(h, wh, cd))
        if m is not None:
            h2 = jnp.where(m[:, None] != 0, h2, h)
        return h2, h2

    hT, hs = jax.lax.scan(step, h0, (a_all, mask))
    return hs, hT


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _elman_core(params, xs, h0, mask, hoist, cd):
    return _forward(params, xs, h0, mask, hoist, cd)


def _elman_fwd(params, xs, h0, mask, hoist, cd):
    hs, hT = _forward(params, xs, h0, mask, hoist, cd)
    return (hs, hT), (params, xs, h0, mask, hs)


def _elman_bwd(hoist, cd, res, cot):
    """Reverse scan over dh only: da_t = dh_t (1 - h_t^2), dh_{t-1} = da_t @ Wh^T
    (+ dh_t itself where the step held); then dWx = X^T dA, dWh = H_prev^T dA,
    db = sum dA over T*B rows. At a held step h_t is the held state, but da_t is 0
    there, so the outputs serve as the residuals."""
    params, xs, h0, mask, hs = res
    dhs, dhT = cot
    T, B, D = xs.shape
    H = h0.shape[-1]
    wh_t = params.wh.T if cd is None else params.wh.T.astype(cd)

    def step(dh, inp):
        dh_out, h, m = inp
        dh = dh + dh_out
        da = dh * (1.0 - h * h)
        if m is None:
            return matmul(da, wh_t, cd), da
        mm = m[:, None] != 0
        da = jnp.where(mm, da, 0.0)
        return jnp.where(mm, matmul(da, wh_t, cd), dh), da

    dh0, das = jax.lax.scan(step, dhT, (dhs, hs, mask), reverse=True)
    da2 = das.reshape(T * B, H)
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0).reshape(T * B, H)
    dwx = matmul(xs.reshape(T * B, D).T, da2, cd)
    dwh = matmul(h_prev.T, da2, cd)
    dxs = matmul(da2, params.wx.T, cd).reshape(T, B, D).astype(xs.dtype)
    dmask = None if mask is None else jnp.zeros_like(mask)
    return ElmanParams(dwx, dwh, da2.sum(axis=0)), dxs, dh0, dmask


_elman_core.defvjp(_elman_fwd, _elman_bwd)


def elman_scan(params: ElmanParams, xs, carry, mask=None, hoist: bool | None = None,
               compute_dtype=None, remat=None):
    """Run one Elman layer over time.

    params: ElmanParams; xs [T, B, D] (time-major); carry (h0 [B, H],);
    mask [T, B] (1 = real step, 0 = hold state) or None; hoist (None: auto);
    compute_dtype: None | "float32" | "bfloat16"; remat: None | "none" | "sqrt" | a
    segment length. Returns (hs [T, B, H], (hT,)). Differentiable in params, xs, carry.
    """
    xs, (h0,), mask, cd, hoist = check_scan_args("RNN", params, xs, carry, mask, hoist, compute_dtype)
    seg = segment_length(xs.shape[0], remat)
    if seg is None:
        hs, hT = _elman_core(params, xs, h0, mask, hoist, cd)
        return hs, (hT,)

    def segment(c, x, m):
        hs, hT = _elman_core(params, x, c[0], m, hoist, cd)
        return hs, (hT,)
    return remat_scan(segment, (h0,), xs, mask, seg)


CELL = Cell(
    name="rnn", init=elman_init,
    carry=lambda params, batch: (jnp.zeros((batch, params.wh.shape[0]), params.wh.dtype),),
    scan=elman_scan, step=elman_step, output=lambda carry: carry[0],
    reference=elman_scan_reference, params=ElmanParams, options=(), gates=1)
