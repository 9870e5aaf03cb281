"""minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs all we needed?",
section 3.2) as pure functions: an LSTM whose gates and candidate read the input only, with
the forget and input gates normalised to sum to one (its "length independence"):

    f_t = sigmoid(x_t @ Wf + bf),  i_t = sigmoid(x_t @ Wi + bi)             [B, H]
    f'_t = f_t / (f_t + i_t),      i'_t = i_t / (f_t + i_t)
    h~_t = x_t @ Wc + bc                                                    (no tanh)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t

Params: wx [D, 3H] and b [3H], gate-major (f, i, candidate). The carry is (h,), the output
h. Scans, masks and bf16 as jaxdl.models.mingru.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import Cell, Elementwise
from jaxdl.models.linear_scan import carry_reference, check_linear_args, held_gate, linear_recurrence
from jaxdl.models.products import compute_dtype_of, matmul


class MinLSTMParams(NamedTuple):
    wx: jax.Array  # [D, 3H] gates f, i, candidate
    b: jax.Array   # [3H]


def minlstm_init(key, in_dim: int, hidden: int, dtype=jnp.float32) -> MinLSTMParams:
    """glorot-uniform wx, zero biases."""
    if in_dim < 1 or hidden < 1:
        raise ValueError(f"minLSTM sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
    wx = jax.nn.initializers.glorot_uniform()(key, (in_dim, 3 * hidden), dtype)
    return MinLSTMParams(wx, jnp.zeros((3 * hidden,), dtype))


def _gates(params, x, cd):
    """(a, b) of h_t = a h_{t-1} + b: (f', i' h~)."""
    f, i, cand = jnp.split(matmul(x, params.wx, cd) + params.b, 3, axis=-1)
    f, i = jax.nn.sigmoid(f), jax.nn.sigmoid(i)
    s = f + i
    return f / s, (i / s) * cand


def _rec(params, state, x):
    (h,) = state
    a, b = _gates(params, x, None)
    return (a * h + b,)


ELEMENTWISE = Elementwise(split=tuple, rec=_rec, emit=lambda params, state, x: tuple(state),
                          recurrent=lambda params: (True, True))


def minlstm_step(params: MinLSTMParams, carry, x, rec=None):
    """One unmasked step (h,), x [B, D] -> (h',); rec is unused (no recurrent product)."""
    return _rec(params, tuple(carry), x)


minlstm_scan_reference = carry_reference(minlstm_step)


def minlstm_scan(params: MinLSTMParams, xs, carry, mask=None, hoist=None, compute_dtype=None, form=None):
    """Run one minLSTM layer: xs [T, B, D], carry (h0 [B, H],), mask [T, B] | None,
    form -> (hs [T, B, H], (hT,)). Differentiable (autodiff) in params, xs and carry."""
    H = params.b.shape[0] // 3
    mask = check_linear_args("minLSTM", params.wx.shape[0], H, xs, carry, 1, mask, hoist)
    a, b = held_gate(*_gates(params, xs, compute_dtype_of(compute_dtype)), mask)
    hs = linear_recurrence(a, b, carry[0], form)
    return hs, (hs[-1],)


CELL = Cell(
    name="minlstm", init=minlstm_init,
    carry=lambda params, batch: (jnp.zeros((batch, params.b.shape[0] // 3), params.b.dtype),),
    scan=minlstm_scan, step=minlstm_step, output=lambda carry: carry[0], reference=minlstm_scan_reference,
    params=MinLSTMParams, options=(), gates=3, forms=("sequential", "parallel"),
    elementwise=lambda params: ELEMENTWISE)
