"""Stacked recurrent layers of any cell (jaxdl.models.cell: LSTM, GRU, Elman) with a
Dense readout on every step: the sequence model the trainers use. Pure functions;
the carry is a tuple with one cell carry per layer ((h, c) for the LSTM, (h,) for
the GRU and the Elman RNN). A layer's params name their cell (Cell.params).

    rnn_init(key, in_dim, hidden, out_dim, layers, cell="lstm", **options) -> params
    rnn_apply(params, xs [T, B, D], carry, mask [T, B] | None) -> (ys [T, B, O], carry)
    rnn_apply_last(params, xs, carry, mask) -> (y [B, O], carry)   readout on the last step only

Every apply takes the same keywords (model.hoist, model.dtype, model.remat, model.scan in the config):
    hoist          None (auto) | bool: the input projection outside the time loop
    compute_dtype  None | "float32" | "bfloat16": bf16 matmul inputs with float32
                   accumulation (readout included); params, cell state, outputs stay float32
    remat          None | "none" | "sqrt" | a segment length: the whole stack (and the
                   readout) runs in checkpointed segments of time, recomputed in the
                   backward pass (jaxdl.models.remat): memory O(sqrt(T)) instead of O(T)
    form           None | "auto" | "sequential" | "parallel": the scan form of a linear cell
                   (jaxdl.models.linear_scan); a cell nonlinear in its state has "sequential" only
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxdl.models.cell import cell_of, get_cell
from jaxdl.models.dense import dense_apply, dense_init
from jaxdl.models.products import compute_dtype_of, contract_lead, matmul
from jaxdl.models.remat import remat_scan, segment_length


def rnn_init(key, in_dim: int, hidden: int, out_dim: int, layers: int = 1, cell: str = "lstm",
             dtype=jnp.float32, block: str | None = None, conv: int = 0, **options):
    """Params {"layers": [cell params per layer], "readout": dense params}. `dtype` is the
    parameters' (master weights') dtype; the compute dtype is an apply argument.
    block: None | "none" | "glu" | "mlp": every layer is the cell inside the LRU paper's
    block (jaxdl.models.block). conv: 0 or K, a causal convolution of K steps before each
    block's recurrence (blocks only). options: the cell's init options (Cell.options, e.g.
    forget_bias for the LSTM)."""
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    c = get_cell(cell)
    unknown = set(options) - set(c.options)
    if unknown:
        raise ValueError(f"cell {cell!r} takes no option {sorted(unknown)} (it takes {list(c.options) or 'none'}); "
                         f"remove {', '.join(sorted(unknown))}")
    if conv and block in (None, "none"):
        raise ValueError(f"model.conv={conv}: the causal convolution is part of a block; set model.block=glu|mlp "
                         "or model.conv=0")
    if block not in (None, "none"):
        from jaxdl.models.block import BLOCKS
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; use one of {['none', *BLOCKS]} (set model.block=none)")
        c, options = BLOCKS[block], {**options, "inner": cell, "conv": conv}
    keys = jax.random.split(key, layers + 1)
    stack = [c.init(keys[i], in_dim if i == 0 else hidden, hidden, dtype, **options) for i in range(layers)]
    return {"layers": stack, "readout": dense_init(keys[-1], hidden, out_dim, dtype)}


def rnn_carry(params, batch: int):
    """Zero state for every layer: a tuple of cell carries ([B, H] arrays)."""
    return tuple(cell_of(p).carry(p, batch) for p in params["layers"])


def rnn_output(carry):
    """The top layer's h [B, H] from a stack's carry."""
    return carry[-1][0]


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _mixed_dense(h, w, b, cd):
    """h [..., H] @ w [H, O] + b with bf16 matmul inputs and f32 accumulation, whose
    backward products are bf16-input too (autodiff would mix f32 cotangents with bf16
    operands, which runs as an f32 matmul). The leading axes (T, B) stay apart: the
    weight gradient contracts over all of them at once (`contract_lead`)."""
    return matmul(h, w, cd) + b


def _mixed_dense_fwd(h, w, b, cd):
    return _mixed_dense(h, w, b, cd), (h, w)


def _mixed_dense_bwd(cd, res, dy):
    h, w = res
    lead = tuple(range(dy.ndim - 1))
    return (matmul(dy, w.T, cd).astype(h.dtype), contract_lead(h, dy, cd), dy.sum(axis=lead))


_mixed_dense.defvjp(_mixed_dense_fwd, _mixed_dense_bwd)


def _readout(params, hs, compute_dtype):
    """Dense readout hs [..., H] -> [..., O] (bf16 inputs, f32 accumulation if asked)."""
    cd = compute_dtype_of(compute_dtype)
    if cd is None:
        return dense_apply(params["readout"], hs)
    return _mixed_dense(hs, params["readout"]["w"], params["readout"]["b"], cd)


def _stack(params, xs, carry, mask, hoist, compute_dtype, form=None):
    new = []
    h = xs
    for p, c in zip(params["layers"], carry):
        h, c2 = cell_of(p).scan(p, h, c, mask, hoist, compute_dtype, form=form)
        new.append(c2)
    return h, tuple(new)


def rnn_features(params, xs, carry, mask=None, hoist=None, compute_dtype=None, remat=None, form=None):
    """Top layer's hidden states hs [T, B, H] and the new carry."""
    S = segment_length(xs.shape[0], remat)
    if S is None:
        return _stack(params, xs, carry, mask, hoist, compute_dtype, form)
    return remat_scan(lambda c, x, m: _stack(params, x, c, m, hoist, compute_dtype, form), carry, xs, mask, S)


def rnn_apply(params, xs, carry, mask=None, hoist=None, compute_dtype=None, remat=None, form=None):
    """Readout on every step: xs [T, B, D] -> ys [T, B, O], carry."""
    S = segment_length(xs.shape[0], remat)

    def run(c, x, m):
        hs, c = _stack(params, x, c, m, hoist, compute_dtype, form)
        return _readout(params, hs, compute_dtype), c
    if S is None:
        return run(carry, xs, mask)
    return remat_scan(run, carry, xs, mask, S)


def rnn_apply_last(params, xs, carry, mask=None, hoist=None, compute_dtype=None, remat=None, form=None):
    """Readout on the last step only (sequence classification): xs [T, B, D] -> y [B, O].
    With a mask, "last" is the state after each sequence's last real step (held state)."""
    _, carry = rnn_features(params, xs, carry, mask, hoist, compute_dtype, remat, form)
    return _readout(params, rnn_output(carry), compute_dtype), carry
