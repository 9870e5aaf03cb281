"""Cells whose gates read the input only (minGRU, minLSTM; Feng et al. 2024), so the
recurrence is linear and element-wise in the state:

    (a_t, b_t) = gates(params, x_t)          [B, H] each
    h_t = a_t * h_{t-1} + b_t

`input_gated_cell` builds the whole Cell (jaxdl.models.cell) from a cell's `gates`: params
wx [D, G*H] and b [G*H] (G gate blocks), carry (h,), output h; both scan forms of
jaxdl.models.linear_scan, autodiff, a held step holds h; compute_dtype=bfloat16 reaches
the input product inside `gates` only, the recurrence stays float32.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jaxdl.models.cell import Cell, Elementwise
from jaxdl.models.linear_scan import carry_reference, check_linear_args, held_gate, linear_recurrence
from jaxdl.models.products import compute_dtype_of


def input_gated_cell(name: str, label: str, gates: Callable, G: int, init: Callable, params: type) -> Cell:
    """The Cell of h_t = a_t * h_{t-1} + b_t with (a_t, b_t) = gates(params, x_t [.., D],
    compute_dtype) -> ([.., H], [.., H]); label names the cell in error messages."""
    def recur(p, state, x, ctx=()):
        (h,) = state
        a, b = gates(p, x, None)
        return (a * h + b,)

    def step(p, carry, x, rec=None):
        """One unmasked step (h,), x [B, D] -> (h',); rec is unused (no recurrent product)."""
        return recur(p, tuple(carry), x)

    def scan(p, xs, carry, mask=None, hoist=None, compute_dtype=None, form=None):
        """xs [T, B, D], carry (h0 [B, H],), mask [T, B] | None -> (hs [T, B, H], (hT,))."""
        H = p.b.shape[0] // G
        mask = check_linear_args(label, p.wx.shape[0], H, xs, carry, 1, mask, hoist)
        a, b = held_gate(*gates(p, xs, compute_dtype_of(compute_dtype)), mask)
        hs = linear_recurrence(a, b, carry[0], form)
        return hs, (hs[-1],)

    elementwise = Elementwise(split=tuple, rec=recur, emit=lambda p, state, x, ctx=(): tuple(state),
                              recurrent=lambda p: (True, True))
    return Cell(
        name=name, init=init,
        carry=lambda p, batch: (jnp.zeros((batch, p.b.shape[0] // G), p.b.dtype),),
        scan=scan, step=step, output=lambda carry: carry[0], reference=carry_reference(step),
        params=params, options=(), gates=G, forms=("sequential", "parallel"),
        elementwise=lambda p: elementwise)
