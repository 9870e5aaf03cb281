"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs all we needed?",
section 3.1) as pure functions: a GRU whose gate and candidate read the input only, so the
recurrence is linear and element-wise in h:

    z_t  = sigmoid(x_t @ Wz + bz)                [B, H]
    h~_t = x_t @ Wc + bc                         [B, H]   (no tanh, as the paper)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

Params: wx [D, 2H] and b [2H], gate-major (z, then the candidate): column j feeds unit
j % H. The carry is (h,), the output h. The paper's log-space scan (for very long
sequences in its parallel form) is not used: both forms here run in the state's own
space (jaxdl.models.linear_scan), which float32 holds for the lengths of jaxdl's tasks
(a product of T gates in (0, 1) underflows to 0, the value it tends to).

form="sequential" | "parallel" (jaxdl.models.linear_scan), autodiff; a held step holds h.
compute_dtype=bfloat16: bf16 inputs to x @ wx (f32 accumulation); the gates and the
recurrence stay float32.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.input_gated import input_gated_cell
from jaxdl.models.products import matmul


class MinGRUParams(NamedTuple):
    wx: jax.Array  # [D, 2H] gate z, candidate
    b: jax.Array   # [2H]


def mingru_init(key, in_dim: int, hidden: int, dtype=jnp.float32, a_min: float = 0.5,
                a_max: float = 0.99) -> MinGRUParams:
    """glorot-uniform wx; the gate's bias spread so that the decays 1 - z at zero input are
    uniform on [a_min, a_max] (as the LRU's ring of |lambda|: a range of time scales from
    the start), the candidate's bias zero."""
    if in_dim < 1 or hidden < 1:
        raise ValueError(f"minGRU sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
    kw, ka = jax.random.split(key)
    wx = jax.nn.initializers.glorot_uniform()(kw, (in_dim, 2 * hidden), dtype)
    z = 1.0 - jax.random.uniform(ka, (hidden,), dtype, a_min, a_max)
    return MinGRUParams(wx, jnp.concatenate([jnp.log(z / (1 - z)), jnp.zeros((hidden,), dtype)]))


def _gates(params, x, cd):
    """(a, b) of h_t = a h_{t-1} + b: (1 - z, z * h~)."""
    zc = matmul(x, params.wx, cd) + params.b
    z, cand = jnp.split(zc, 2, axis=-1)
    z = jax.nn.sigmoid(z)
    return 1.0 - z, z * cand


CELL = input_gated_cell("mingru", "minGRU", _gates, 2, mingru_init, MinGRUParams)
