"""The block of the LRU paper (Orvieto et al. 2023, figure 1), for any cell: the recurrence
followed by a position-wise nonlinearity, with a residual path (`model.block=glu|mlp`).

    u_t = the inner cell's output at t                          [B, H]
    glu:  y_t = x_t + (gelu(u_t) @ W_a + b_a) * sigmoid(gelu(u_t) @ W_g + b_g)
    mlp:  y_t = x_t + gelu(u_t @ W_1 + b_1) @ W_2 + b_2          (hidden width 2H)

The residual x_t is the block's input; a block whose input is not H wide (the first layer
of a stack on a D-wide input) has no residual path. No normalisation layer: the paper's
LayerNorm / BatchNorm before the recurrence is left out (a batch statistic would tie the
streams of a batch together, and the echo and adding jobs learn without it).

`model.conv=K` (K >= 1; 0, the default, for none) puts a causal depthwise convolution of K
steps before the recurrence (jaxdl.models.causal_conv; Griffin's and Mamba's Conv1D): the
inner cell reads x'_t = sum_j w_j x_{t-j} + b, the residual stays x_t.

A block's params are (cell, its own weights), cell being ConvParams(the inner cell's, w, b)
with a convolution; its carry is (y, *the inner carry) (with a convolution, the inner
carry ends with its buffer of the last K - 1 inputs): y is the block's output, held on a
masked step like every carry. The stack (jaxdl.models.rnn) builds
blocks with rnn_init(..., block="glu"); everything else reaches them through the Cell
interface (cell_of finds BLOCKS by their params). A block around an element-wise cell is
element-wise (its Elementwise adds the block's weights to what `emit` reads).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.causal_conv import CELL as CONV
from jaxdl.models.cell import Cell, Elementwise, cell_of, get_cell
from jaxdl.models.linear_scan import hold_outputs
from jaxdl.models.products import compute_dtype_of, matmul


class GLUBlockParams(NamedTuple):
    cell: tuple       # the inner cell's params
    w: jax.Array      # [H, 2H] value and gate (W_a | W_g)
    b: jax.Array      # [2H]


class MLPBlockParams(NamedTuple):
    cell: tuple
    w1: jax.Array     # [H, 2H]
    b1: jax.Array     # [2H]
    w2: jax.Array     # [2H, H]
    b2: jax.Array     # [H]


def _mix(params, u, cd):
    """The position-wise part: u [..., H] -> [..., H]."""
    if isinstance(params, GLUBlockParams):
        v = matmul(jax.nn.gelu(u), params.w, cd) + params.b
        a, g = jnp.split(v, 2, axis=-1)
        return a * jax.nn.sigmoid(g)
    return matmul(jax.nn.gelu(matmul(u, params.w1, cd) + params.b1), params.w2, cd) + params.b2


def _out(params, u, x, cd):
    """y = residual + mix(u); the residual is x where the block's input is H wide."""
    y = _mix(params, u, cd)
    return y + x if x.shape[-1] == y.shape[-1] else y


def _init(kind):
    def init(key, in_dim, hidden, dtype=jnp.float32, inner="lru", conv=0, **options):
        """conv: 0 (none) or K: the inner cell runs behind a causal depthwise convolution of
        K steps (jaxdl.models.causal_conv)."""
        if not isinstance(conv, int) or conv < 0:
            raise ValueError(f"model.conv={conv}: the causal convolution's kernel is 0 (none) or a number of "
                             "steps >= 1 (e.g. model.conv=4)")
        k0, k1, k2 = jax.random.split(key, 3)
        if conv:
            p = CONV.init(k0, in_dim, hidden, dtype, inner=inner, conv=conv, **options)
        else:
            p = get_cell(inner).init(k0, in_dim, hidden, dtype, **options)
        glorot = jax.nn.initializers.glorot_uniform()
        if kind == "glu":
            return GLUBlockParams(p, glorot(k1, (hidden, 2 * hidden), dtype), jnp.zeros((2 * hidden,), dtype))
        return MLPBlockParams(p, glorot(k1, (hidden, 2 * hidden), dtype), jnp.zeros((2 * hidden,), dtype),
                              glorot(k2, (2 * hidden, hidden), dtype), jnp.zeros((hidden,), dtype))
    return init


def block_carry(params, batch):
    inner = cell_of(params.cell).carry(params.cell, batch)
    return (jnp.zeros_like(inner[0]),) + tuple(inner)


def block_step(params, carry, x, rec=jnp.matmul):
    """One unmasked step: the inner cell's step, then y = residual + mix(its output)."""
    c = cell_of(params.cell)
    inner = c.step(params.cell, tuple(carry[1:]), x, rec)
    return (_out(params, c.output(inner), x, None),) + tuple(inner)


def block_scan(params, xs, carry, mask=None, hoist=None, compute_dtype=None, form=None):
    """The inner cell's scan, then the position-wise part on every step at once; a held
    step shows the last real step's y (jaxdl.models.linear_scan.hold_outputs)."""
    c = cell_of(params.cell)
    cd = compute_dtype_of(compute_dtype)
    us, inner = c.scan(params.cell, xs, tuple(carry[1:]), mask, hoist, compute_dtype, form=form)
    ys = hold_outputs(_out(params, us, xs, cd), carry[0], mask)
    return ys, (ys[-1],) + tuple(inner)


def block_reference(params, xs, carry, mask=None, compute_dtype=None):
    """The inner cell's reference, then the position-wise part with the hold (autodiff oracle)."""
    c = cell_of(params.cell)
    us, inner = c.reference(params.cell, xs, tuple(carry[1:]), mask, compute_dtype)
    ys = hold_outputs(_out(params, us, xs, compute_dtype_of(compute_dtype)), carry[0], mask)
    return ys, (ys[-1],) + tuple(inner)


def _elementwise(params):
    """A block around an element-wise cell is element-wise: the same state and rec; emit
    adds the block's output (reading the block's weights only)."""
    c = cell_of(params.cell)
    if c.elementwise is None:
        return None
    ew = c.elementwise(params.cell)
    n_own = len(params) - 1

    def emit(p, state, x, ctx=()):
        inner = ew.emit(p.cell, state, x, ctx)
        return (_out(p, c.output(inner), x, None),) + tuple(inner)
    return Elementwise(split=lambda carry: ew.split(tuple(carry[1:])),
                       rec=lambda p, state, x, ctx=(): ew.rec(p.cell, state, x, ctx), emit=emit,
                       recurrent=lambda p: tuple(ew.recurrent(p.cell)) + (False,) * n_own,
                       context=lambda carry: ew.context(tuple(carry[1:])))


def _cell(kind, params_cls):
    return Cell(name=f"block_{kind}", init=_init(kind), carry=block_carry, scan=block_scan, step=block_step,
                output=lambda carry: carry[0], reference=block_reference, params=params_cls, options=("inner", "conv"),
                gates=1, forms=("sequential", "parallel"), elementwise=_elementwise, wrapper=True)


BLOCKS = {"glu": _cell("glu", GLUBlockParams), "mlp": _cell("mlp", MLPBlockParams)}
CELLS = tuple(BLOCKS.values())
