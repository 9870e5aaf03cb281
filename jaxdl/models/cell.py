"""The recurrent cell interface, and the registry of cells by name.

A cell is one module of jaxdl.models that defines `CELL = Cell(...)`: the stack
(jaxdl.models.rnn), the TBPTT engine, the online gradient estimators
(jaxdl.estimators) and the Keras-style layers reach every cell through it.

    init(key, in_dim, hidden, dtype, **options) -> params
        a NamedTuple of arrays; EVERY leaf's last axis is G*H (G gate blocks of the H
        units, gate-major), so column j of any leaf feeds unit j % H. The recurrent
        weight leaf is named `wh` [H, G*H]: it is the only path from one unit's state
        to another's (what SnAp-1 relies on).
    carry(params, batch) -> carry      the zero state: a tuple of [B, H] arrays
    scan(params, xs [T, B, D], carry, mask [T, B] | None, hoist, compute_dtype)
        -> (hs [T, B, H], carry)       the fast path (the stack adds remat around it)
    step(params, carry, x [B, D], rec=jnp.matmul) -> carry
        one unmasked step, plain jnp, differentiable by autodiff in every argument:
        the transition the online estimators (RTRL, UORO, SnAp-1) differentiate. The
        recurrent product h @ wh is computed as rec(h, params.wh) and nowhere else
    output(carry) -> h [B, H]          what the next layer and the readout see
    reference(params, xs, carry, mask, compute_dtype) -> (hs, carry)
        the same recurrence as a plain lax.scan of `step`, differentiated by
        autodiff: the oracle of the tests
    params: the NamedTuple class `init` returns (a layer's params name their cell)
    options: init options the cell takes (e.g. ("forget_bias",)); a config setting a
        cell does not list is refused before any compute
    gates: G, the gate blocks of the parameter columns (LSTM 4, GRU 3, Elman 1)

`cells()` finds every module of jaxdl.models with a CELL, so adding a cell is one
module (plus conf/model/<name>.yaml and its tests): docs/cells.md.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Callable, NamedTuple


class Cell(NamedTuple):
    name: str
    init: Callable
    carry: Callable
    scan: Callable
    step: Callable
    output: Callable
    reference: Callable
    params: type            # the NamedTuple class of its params (the stack finds a layer's cell by it)
    options: tuple = ()
    gates: int = 1


def hidden_of(params) -> int:
    """H of a cell's params: the recurrent weight is [H, G*H]."""
    return params.wh.shape[0]


@cache
def cells() -> dict[str, Cell]:
    """Every cell of jaxdl.models by name (modules that define CELL)."""
    import jaxdl.models as pkg
    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"jaxdl.models.{info.name}")
        c = getattr(mod, "CELL", None)
        if isinstance(c, Cell):
            found[c.name] = c
    return found


def cell_of(layer_params) -> Cell:
    """The cell whose params these are."""
    for c in cells().values():
        if isinstance(layer_params, c.params):
            return c
    raise TypeError(f"{type(layer_params).__name__} is not the params of a registered cell")


def get_cell(name: str) -> Cell:
    known = cells()
    if name not in known:
        raise ValueError(f"unknown cell {name!r}; known cells: {sorted(known)} (set model=<one of them>)")
    return known[name]
