"""What the one-state cells (GRU, Elman) share: their scans' argument checks and their
reference scan."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.models.products import compute_dtype_of, default_hoist, matmul


def check_scan_args(kind: str, params, xs, carry, mask, hoist, compute_dtype):
    """Shared argument checks of a one-state cell's scan (GRU, Elman): clear errors for
    a wrong layout, feature count or batch; mask cast to the state's dtype; hoist
    resolved; compute dtype parsed. Returns (xs, (h0,), mask, cd, hoist)."""
    if xs.ndim != 3:
        raise ValueError(f"{kind} scan expects time-major xs [T, B, D], got shape {xs.shape}")
    if xs.shape[-1] != params.wx.shape[0]:
        raise ValueError(
            f"input has {xs.shape[-1]} features but the {kind} was built for {params.wx.shape[0]}; "
            "reshape the data to [samples, time steps, features] with the right feature count")
    if not (isinstance(carry, (tuple, list)) and len(carry) == 1):
        raise ValueError(f"a {kind} carry is a 1-tuple (h,), got {type(carry).__name__}"
                         f"{f' of {len(carry)} entries' if isinstance(carry, (tuple, list)) else ''}")
    h0 = carry[0]
    need = (xs.shape[1], params.wh.shape[0])
    if h0.shape != need:
        raise ValueError(
            f"state has shape {h0.shape} but the batch needs {need}; a stateful model keeps its "
            "batch size: use the batch size it was built with or reset the state")
    if mask is not None:
        if mask.shape != xs.shape[:2]:
            raise ValueError(f"mask has shape {mask.shape}; it must be [T, B] = {xs.shape[:2]}")
        mask = mask.astype(h0.dtype)
    return xs, (h0,), mask, compute_dtype_of(compute_dtype), bool(default_hoist() if hoist is None else hoist)


def one_state_reference(step):
    """reference(params, xs [T, B, D], (h0,), mask [T, B] | None, compute_dtype) ->
    (hs [T, B, H], (hT,)): a plain lax.scan of `step(params, (h,), x, rec, cd)` that holds
    h where mask is 0, differentiated by autodiff (the tests' oracle). compute_dtype casts
    the matmul inputs as the fast scan does."""
    def reference(params, xs, carry, mask=None, compute_dtype=None):
        cd = compute_dtype_of(compute_dtype)
        rec = lambda h, w: matmul(h, w, cd)

        def body(c, inp):
            x, m = inp
            c2 = step(params, c, x, rec, cd)
            if m is not None:
                c2 = (jnp.where(m[:, None].astype(bool), c2[0], c[0]),)
            return c2, c2[0]
        carry, hs = jax.lax.scan(body, carry, (xs, mask))
        return hs, carry
    return reference
