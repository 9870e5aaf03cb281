"""The Elman RNN (a "simple RNN") as pure functions, differentiated by autodiff.

    h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b)        Wx [D, H], Wh [H, H], b [H]

(Elman 1990; torch.nn.RNN(nonlinearity="tanh") with its two biases summed into b;
Keras SimpleRNN). One gate block: G = 1, every leaf's last axis is H.

`elman_scan` runs the recurrence with `jax.lax.scan` over time (time-major) and is
differentiated by JAX autodiff: a hand-written VJP (reverse scan over dh alone, the
weight gradients as matmuls after it; experiments/elman_vjp.py) was measured no
faster on this CPU, slower at H=128 (experiments/bench_cells.py, docs/cells.md).
Gradients are checked against autodiff of the plain `elman_scan_reference`, central
differences (式6) and torch.nn.RNN in tests/test_cells.py.

mask [T, B] (1 = real step, 0 = hold the state) holds h where it is 0.
hoist: x_t @ Wx + b for all steps as one matmul outside the loop.
compute_dtype=bfloat16: the forward matmuls take bf16 inputs and accumulate in
float32 (jaxdl.models.lstm.matmul); params, state and gradients stay float32. The
backward pass is autodiff's: its matmuls take the float32 cotangents.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import Cell, sequential_only
from jaxdl.models.products import matmul
from jaxdl.models.remat import remat_scan, segment_length
from jaxdl.models.scan_args import check_scan_args, one_state_reference


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


# the plain lax.scan of the step, differentiated by autodiff: the oracle of the tests
elman_scan_reference = one_state_reference(_step)


def _forward(params, xs, h0, mask, hoist, cd):
    """The fused forward scan (weights cast once, input projection hoisted or in the
    loop), differentiated by autodiff -> (hs [T, B, H], hT)."""
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


def elman_scan(params: ElmanParams, xs, carry, mask=None, hoist: bool | None = None,
               compute_dtype=None, remat=None):
    """Run one Elman layer over time.

    params: ElmanParams; xs [T, B, D] (time-major); carry (h0 [B, H],);
    mask [T, B] (1 = real step, 0 = hold state) or None; hoist (None: auto);
    compute_dtype: None | "float32" | "bfloat16"; remat: None | "none" | "sqrt" | a
    segment length. Returns (hs [T, B, H], (hT,)). Differentiable (autodiff) in params,
    xs and carry.
    """
    xs, (h0,), mask, cd, hoist = check_scan_args("RNN", params, xs, carry, mask, hoist, compute_dtype)
    seg = segment_length(xs.shape[0], remat)
    if seg is None:
        hs, hT = _forward(params, xs, h0, mask, hoist, cd)
        return hs, (hT,)

    def segment(c, x, m):
        hs, hT = _forward(params, x, c[0], m, hoist, cd)
        return hs, (hT,)
    return remat_scan(segment, (h0,), xs, mask, seg)


CELL = Cell(
    name="rnn", init=elman_init,
    carry=lambda params, batch: (jnp.zeros((batch, params.wh.shape[0]), params.wh.dtype),),
    scan=sequential_only("rnn", elman_scan), step=elman_step, output=lambda carry: carry[0],
    reference=elman_scan_reference, params=ElmanParams, options=(), gates=1)
