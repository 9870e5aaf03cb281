"""The element-wise linear recurrence h_t = a_t * h_{t-1} + b_t of the linear cells (LRU,
minGRU, minLSTM), in its two forms, and the hold of a masked step.

    linear_recurrence(a [T, ...], b [T, ...], h0 [...], form) -> hs [T, ...]

form="sequential": a `jax.lax.scan` over t (T steps of O(1) depth each).
form="parallel":   `jax.lax.associative_scan` with the operator
                   (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)
                   (Blelloch 1990; Martin & Cundy 2018; the LRU paper's appendix), log2(T)
                   depth: what pays on GPUs and TPUs. h0 enters as b_1 + a_1 h0.
Both are real or complex (the LRU's state is complex inside the scan, stored as real and
imaginary parts outside it), both are differentiated by JAX autodiff. A held step is
a_t = 1, b_t = 0 (the state stays), so masks cost nothing in either form.

form="auto" picks by platform (`default_form`): measured in experiments/bench_cells.py
(docs/cells.md): on this CPU the sequential scan is the faster one.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

FORMS = ("auto", "sequential", "parallel")


def default_form() -> str:
    """The measured-faster form of this platform: sequential on CPU, parallel elsewhere
    (experiments/bench_cells.py --scan; docs/cells.md)."""
    return "sequential" if jax.default_backend() == "cpu" else "parallel"


def resolve_form(form) -> str:
    if form is None or form == "auto":
        return default_form()
    if form not in FORMS:
        raise ValueError(f"unknown scan form {form!r}; use one of {FORMS} (set model.scan=auto)")
    return form


def _combine(left, right):
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def linear_recurrence(a, b, h0, form: str = "sequential"):
    """hs[t] = a[t] * hs[t-1] + b[t], hs[-1] = h0; a, b [T, ...] (a broadcastable to b),
    h0 [...] -> hs [T, ...]."""
    a = jnp.broadcast_to(a, b.shape)
    if resolve_form(form) == "sequential":
        def step(h, ab):
            at, bt = ab
            h = at * h + bt
            return h, h
        _, hs = jax.lax.scan(step, h0, (a, b))
        return hs
    b = b.at[0].add(a[0] * h0)
    _, hs = jax.lax.associative_scan(_combine, (a, b), axis=0)
    return hs


def held_gate(a, b, mask):
    """(a, b) with held steps (mask [T, B] == 0) made a = 1, b = 0: the state stays."""
    if mask is None:
        return a, b
    m = mask.reshape(mask.shape + (1,) * (b.ndim - mask.ndim)) != 0
    return jnp.where(m, a, jnp.ones_like(a)), jnp.where(m, b, jnp.zeros_like(b))


def hold_outputs(ys, y0, mask):
    """ys [T, B, H] computed at every step -> the value of the last real step at or before
    t (y0 [B, H] before the first): what a held step shows. Parallel in t (a running max
    of the real steps' indices, then a gather)."""
    if mask is None:
        return ys
    T = ys.shape[0]
    idx = jnp.where(mask != 0, jnp.arange(T)[:, None], -1)            # [T, B]
    last = jax.lax.cummax(idx, axis=0)
    got = jnp.take_along_axis(ys, jnp.maximum(last, 0)[..., None], axis=0)
    return jnp.where((last >= 0)[..., None], got, y0[None])


def check_linear_args(kind: str, in_dim: int, hidden: int, xs, carry, parts: int, mask, hoist):
    """The argument checks of a linear cell's scan: time-major xs with in_dim features, a
    carry of `parts` [B, H] arrays, a [T, B] mask (cast to the state's dtype). hoist: the
    input projection of a linear cell is always one product over all steps (its
    recurrence has no matmul), so only None (auto) or True is taken."""
    if xs.ndim != 3:
        raise ValueError(f"{kind} scan expects time-major xs [T, B, D], got shape {xs.shape}")
    if xs.shape[-1] != in_dim:
        raise ValueError(f"input has {xs.shape[-1]} features but the {kind} was built for {in_dim}; "
                         "reshape the data to [samples, time steps, features] with the right feature count")
    if not (isinstance(carry, (tuple, list)) and len(carry) == parts):
        raise ValueError(f"a {kind} carry is a tuple of {parts} [B, H] arrays, got {type(carry).__name__}")
    need = (xs.shape[1], hidden)
    if any(c.shape != need for c in carry):
        raise ValueError(f"state has shapes {[c.shape for c in carry]} but the batch needs {need}; a stateful model "
                         "keeps its batch size: use the batch size it was built with or reset the state")
    if hoist is False:
        raise ValueError(f"model.hoist=false: the {kind} projects its inputs for all steps at once (its recurrence "
                         "is element-wise, with no matmul to keep in the loop); remove model.hoist")
    if mask is not None:
        if mask.shape != xs.shape[:2]:
            raise ValueError(f"mask has shape {mask.shape}; it must be [T, B] = {xs.shape[:2]}")
        mask = mask.astype(carry[0].dtype)
    return mask


def carry_reference(step):
    """reference(params, xs [T, B, D], carry, mask [T, B] | None, compute_dtype) ->
    (hs [T, B, H], carry): a plain lax.scan of `step(params, carry, x)` that holds the
    whole carry where mask is 0 and emits carry[0]; differentiated by autodiff, the oracle
    of the tests (compute_dtype is accepted for the interface; the step is float32)."""
    def reference(params, xs, carry, mask=None, compute_dtype=None):
        def body(c, inp):
            x, m = inp
            c2 = step(params, c, x)
            if m is not None:
                c2 = tuple(jnp.where(m[:, None] != 0, a, b) for a, b in zip(c2, c))
            return c2, c2[0]
        carry, hs = jax.lax.scan(body, tuple(carry), (xs, mask))
        return hs, carry
    return reference
