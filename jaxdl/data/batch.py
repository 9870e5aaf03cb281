"""The batch layout every sequence trainer reads: time-major arrays with a loss
weight and a mask that holds the recurrent state (jaxdl.train.tbptt,
jaxdl.estimators), and the one way an update reads its steps from them."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Batch(NamedTuple):
    x: Any       # [T, B, ...]
    y: Any       # [T, B, ...]
    mask: Any    # [T, B]
    weight: Any  # [T, B]


def time_rows(a, n, start, size: int):
    """a[n, start:start + size] of a stack of batches a [N, T, ...], zeros where the rows
    fall outside [0, T) (before the stream or past its ragged end): [size, ...].

    n and start may be traced. The cost is O(size), whatever T: one dynamic slice of `size`
    rows at the start clamped into [0, T - size], then a shift by the clamped distance
    within 3 * size rows. An update reads its window this way, so its cost does not grow
    with the length of the stream it comes from."""
    T = a.shape[1]
    if T < size:                  # a batch shorter than one window (static): pad it to one
        a = jnp.pad(a, [(0, 0), (0, size - T)] + [(0, 0)] * (a.ndim - 2))
        T = size
    i32 = lambda v: jnp.asarray(v, jnp.int32)       # one index type, with or without jax_enable_x64
    start = i32(start)
    at = jnp.clip(start, 0, T - size)
    piece = jax.lax.dynamic_slice(a, (i32(n), at) + (i32(0),) * (a.ndim - 2), (1, size) + a.shape[2:])[0]
    zeros = jnp.zeros((size,) + a.shape[2:], a.dtype)
    ext = jnp.concatenate([zeros, piece, zeros])
    return jax.lax.dynamic_slice_in_dim(ext, jnp.clip(size + start - at, 0, 2 * size), size)
