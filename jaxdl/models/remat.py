"""Rematerialisation over time: run a recurrence in segments, each under
`jax.checkpoint`, so the backward pass recomputes a segment's activations from the
state at its start instead of storing them (Chen et al. 2016, "Training deep nets
with sublinear memory cost"; Gruslys et al. 2016 for RNNs).

With segments of S steps over T steps, the forward pass stores only the T/S states
at the segment starts (and the segment outputs the caller asks for); the backward
pass holds one segment's activations at a time: memory O(T/S + S) per layer instead
of O(T), i.e. O(sqrt(T)) for S = ceil(sqrt(T)) ("sqrt"), for about one extra
forward pass of compute. Gradients are the same function (only the order of the
float sums in the weight gradients changes).

    segment_length(T, remat) -> S or None (no remat)
    remat_scan(fn, carry, xs [T, B, ...], mask [T, B] | None, S) -> (outs [T, ...], carry)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

REMAT_CHOICES = ("none", "sqrt")


def segment_length(T: int, remat) -> int | None:
    """remat: None | "none" -> None; "sqrt" -> ceil(sqrt(T)); an int S >= 1 -> min(S, T).
    None also where one segment would cover everything (T <= S)."""
    if remat is None or remat == "none" or remat is False:
        return None
    if remat == "sqrt" or remat is True:
        S = math.isqrt(T - 1) + 1 if T > 1 else 1
    elif isinstance(remat, int) and not isinstance(remat, bool) and remat >= 1:
        S = remat
    else:
        raise ValueError(f"remat must be one of {REMAT_CHOICES} or a segment length >= 1, got {remat!r} "
                         "(set model.remat=none or model.remat=sqrt)")
    return None if S >= T else S


def _pad(a, n):
    return jnp.pad(a, [(0, n)] + [(0, 0)] * (a.ndim - 1))


def remat_scan(fn, carry, xs, mask, S: int):
    """Run fn(carry, xs_seg [S, B, ...], mask_seg [S, B]) -> (outs_seg [S, ...], carry)
    over ceil(T/S) segments with lax.scan, each segment under jax.checkpoint saving
    nothing inside it. A ragged last segment is padded with masked steps (the state is
    held there, so the final carry and the outputs of the real steps are unchanged).
    xs: an array or pytree of arrays with leading time axis T. Returns (outs [T, ...], carry)."""
    leaves = jax.tree.leaves(xs)
    T, B = leaves[0].shape[:2]
    n = -(-T // S)
    pad = n * S - T
    if mask is None:
        mask = jnp.ones((T, B), jax.tree.leaves(carry)[0].dtype)
    if pad:
        xs = jax.tree.map(lambda a: _pad(a, pad), xs)
        mask = _pad(mask, pad)
    seg = lambda a: a.reshape((n, S) + a.shape[1:])
    xs, mask = jax.tree.map(seg, xs), seg(mask)

    def body(c, inp):
        x, m = inp
        out, c = fn(c, x, m)
        return c, out
    body = jax.checkpoint(body, policy=jax.checkpoint_policies.nothing_saveable, prevent_cse=False)
    carry, outs = jax.lax.scan(body, carry, (xs, mask))
    outs = jax.tree.map(lambda a: a.reshape((n * S,) + a.shape[2:])[:T], outs)
    return outs, carry
