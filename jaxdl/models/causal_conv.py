"""A short causal depthwise convolution of a cell's inputs before its recurrence (the
Conv1D of kernel 4 in Griffin's recurrent block, De et al. 2024; Mamba, Gu & Dao 2023;
`conv_size` of Meta's lingua minGRU), as a wrapper around any cell (`model.conv=K`,
inside `model.block`: jaxdl.models.block):

    x'_t = sum_{j=0}^{K-1} w_j * x_{t-j} + b      w [K, D], b [D]   (depthwise, D = input width)
    the inner cell runs on x'_t

A cell whose decays read the current input only (minGRU, minLSTM) has no delay line; the
convolution gives it the last K inputs at once.

Params ConvParams(cell, w, b); the carry is (*the inner carry, *buf): buf the last K - 1
inputs (K - 1 arrays [B, D], oldest first), so a TBPTT window continues exactly from the
previous one. A held (masked) step does not exist for the state: the inner cell holds its
state and the buffer holds too (the next real step reads the last real inputs).

scan: the convolution over the concatenation of the buffer and the window, every step at
once: without a mask K shifted slices; with one, each step reads the inputs of the real
steps before it by their rank (a gather), so any mask is exact. reference: a plain lax.scan
of `step` (a shift register), the oracle. The convolution runs in the params' dtype (float32):
it is element-wise, no matmul; compute_dtype reaches the inner cell only.

Element-wise estimators (jaxdl.estimators.elementwise): the buffer is the carry's context
(read by rec, fixed by the inputs); w and b enter the recurrence through every unit (x'
feeds every unit's gates), so they are recurrent leaves of kind DENSE.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import DENSE, Cell, Elementwise, cell_of, get_cell
from jaxdl.models.linear_scan import carry_reference


class ConvParams(NamedTuple):
    cell: tuple       # the inner cell's params
    w: jax.Array      # [K, D]: w[j] multiplies x_{t-j}
    b: jax.Array      # [D]


def conv_init(key, in_dim: int, hidden: int, dtype=jnp.float32, inner: str = "mingru", conv: int = 4,
              **options) -> ConvParams:
    """The inner cell's params on a D-wide input, w ~ U(-1/sqrt(K), 1/sqrt(K)) (PyTorch's
    Conv1d default, fan-in K for a depthwise kernel), b = 0."""
    if conv < 1:
        raise ValueError(f"a causal convolution needs a kernel of at least 1 step, got conv={conv} "
                         "(set model.conv=0 for none)")
    k0, k1 = jax.random.split(key)
    p = get_cell(inner).init(k0, in_dim, hidden, dtype, **options)
    bound = 1.0 / conv ** 0.5
    w = jax.random.uniform(k1, (conv, in_dim), dtype, -bound, bound)
    return ConvParams(p, w, jnp.zeros((in_dim,), dtype))


def _parts(params, carry):
    """(the inner carry, buf) of a conv carry."""
    n = len(carry) - (params.w.shape[0] - 1)
    return tuple(carry[:n]), tuple(carry[n:])


def conv_carry(params, batch: int):
    inner = cell_of(params.cell).carry(params.cell, batch)
    K, D = params.w.shape
    return tuple(inner) + tuple(jnp.zeros((batch, D), params.w.dtype) for _ in range(K - 1))


def conv_one(params, buf, x):
    """x'_t of one step: buf (K - 1 arrays [B, D], oldest first), x [B, D] -> [B, D]."""
    K = params.w.shape[0]
    out = params.b + params.w[0] * x
    for j in range(1, K):
        out = out + params.w[j] * buf[K - 1 - j]
    return out


def shift(buf, x):
    """The buffer after a real step with input x."""
    return tuple(buf[1:]) + (x,) if buf else ()


def conv_step(params, carry, x, rec=jnp.matmul):
    """One unmasked step: x' from the buffer and x, the inner cell's step on x', the shift."""
    inner, buf = _parts(params, carry)
    c = cell_of(params.cell)
    return tuple(c.step(params.cell, inner, conv_one(params, buf, x), rec)) + shift(buf, x)


def conv_all(params, xs, buf, mask=None):
    """x' for a window and the buffer after it: xs [T, B, D], buf (K - 1 arrays [B, D]),
    mask [T, B] | None -> (x' [T, B, D], buf). A held step's x' is that of the last real
    step's inputs (the inner cell ignores it) and leaves the buffer as it was."""
    K = params.w.shape[0]
    T = xs.shape[0]
    full = jnp.concatenate([jnp.stack(buf), xs]) if K > 1 else xs         # [K - 1 + T, B, D]
    if mask is None:
        out = params.b + sum(params.w[j] * full[K - 1 - j:K - 1 - j + T] for j in range(K))
        return out, tuple(full[T + i] for i in range(K - 1))
    real = jnp.concatenate([jnp.ones((K - 1, xs.shape[1]), bool), mask != 0])   # the buffer is real input
    rank = jnp.cumsum(real, axis=0) - 1                  # rank of the last real entry at or before each
    order = jnp.argsort(~real, axis=0, stable=True)      # the real entries' indices, in order, first
    pick = lambda r: jnp.take_along_axis(full, jnp.take_along_axis(order, jnp.maximum(r, 0), axis=0)[..., None],
                                         axis=0)
    r = rank[K - 1:]                                     # [T, B]
    out = params.b + sum(params.w[j] * pick(r - j) for j in range(K))
    n = rank[-1:]                                        # [1, B]: the rank of the last real entry
    return out, tuple(pick(n - (K - 2 - i))[0] for i in range(K - 1))


def conv_scan(params, xs, carry, mask=None, hoist=None, compute_dtype=None, form=None):
    """xs [T, B, D], carry (*inner, *buf), mask [T, B] | None -> (the inner cell's outputs
    [T, B, H], carry): x' for every step at once, then the inner cell's scan on it."""
    inner, buf = _parts(params, carry)
    if xs.ndim != 3 or xs.shape[-1] != params.w.shape[1]:
        raise ValueError(f"the causal convolution was built for inputs [T, B, {params.w.shape[1]}], "
                         f"got shape {xs.shape}")
    xc, buf = conv_all(params, xs, buf, mask)
    hs, inner = cell_of(params.cell).scan(params.cell, xc, inner, mask, hoist, compute_dtype, form=form)
    return hs, tuple(inner) + buf


def _output(carry):
    return carry[0]


def _elementwise(params):
    """Element-wise when the inner cell is: its state and emit, with the buffer as context
    and w, b as DENSE recurrent leaves."""
    c = cell_of(params.cell)
    if c.elementwise is None:
        return None
    ew = c.elementwise(params.cell)

    def context(carry):
        inner, buf = _parts(params, carry)
        return (buf, ew.context(inner))

    def rec(p, state, x, ctx):
        return ew.rec(p.cell, state, conv_one(p, ctx[0], x), ctx[1])

    def emit(p, state, x, ctx):
        return tuple(ew.emit(p.cell, state, conv_one(p, ctx[0], x), ctx[1])) + shift(ctx[0], x)

    return Elementwise(split=lambda carry: ew.split(_parts(params, carry)[0]), rec=rec, emit=emit,
                       recurrent=lambda p: tuple(ew.recurrent(p.cell)) + (DENSE, DENSE), context=context)


CELL = Cell(name="conv", init=conv_init, carry=conv_carry, scan=conv_scan, step=conv_step, output=_output,
            reference=carry_reference(conv_step), params=ConvParams, options=("inner", "conv"), gates=1,
            forms=("sequential", "parallel"), elementwise=_elementwise, wrapper=True)
