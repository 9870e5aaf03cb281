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

from jaxdl.models.input_gated import input_gated_cell
from jaxdl.models.products import matmul


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


CELL = input_gated_cell("minlstm", "minLSTM", _gates, 3, minlstm_init, MinLSTMParams)
