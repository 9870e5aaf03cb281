"""The Elman RNN's hand-written VJP, kept out of jaxdl to be measured against autodiff
(experiments/bench_cells.py): the reverse scan carries only dh and emits
da_t = dh_t (1 - h_t^2), with the outputs as the only residuals; the weight gradients
are three matmuls over all T*B rows after the scan. On this CPU it was no faster than
autodiff of the same forward scan, so jaxdl.models.elman differentiates its scan by
autodiff (docs/cells.md). bench_cells.py checks its gradients against autodiff before
it times it.

    elman_scan_custom_vjp(params, xs [T, B, D], h0 [B, H], mask [T, B] | None, hoist, cd)
        -> (hs [T, B, H], hT)
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxdl.models.elman import ElmanParams, _forward
from jaxdl.models.products import matmul


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


def elman_scan_custom_vjp(params, xs, h0, mask=None, hoist=False, cd=None):
    """The Elman forward scan with the hand-written backward pass."""
    return _elman_core(params, xs, h0, mask, hoist, cd)
