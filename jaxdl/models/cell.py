"""The recurrent cell interface, and the registry of cells by name.

A cell is one module of jaxdl.models that defines `CELL = Cell(...)`: the stack
(jaxdl.models.rnn), the TBPTT engine, the online gradient estimators
(jaxdl.estimators) and the Keras-style layers reach every cell through it.

    init(key, in_dim, hidden, dtype, **options) -> params
        a NamedTuple of arrays. A dense cell (LSTM, GRU, Elman): EVERY leaf's last axis
        is G*H (G gate blocks of the H units, gate-major), so column j of any leaf feeds
        unit j % H, and the recurrent weight leaf `wh` [H, G*H] is the only path from
        one unit's state to another's (what SnAp-1 relies on). An element-wise cell
        (`elementwise`, below) has no `wh`.
    carry(params, batch) -> carry      the zero state: a tuple of [B, H] arrays (a wrapper
                                       may add others: a convolution's buffer, [B, D])
    scan(params, xs [T, B, D], carry, mask [T, B] | None, hoist, compute_dtype, form)
        -> (hs [T, B, H], carry)       the fast path (the stack adds remat around it);
                                       form: one of `forms` or "auto"/None
    step(params, carry, x [B, D], rec=jnp.matmul) -> carry
        one unmasked step, plain jnp, differentiable by autodiff in every argument:
        the transition the online estimators (RTRL, UORO, SnAp-1) differentiate. A
        dense cell computes the recurrent product h @ wh as rec(h, params.wh) and
        nowhere else; an element-wise cell has none and ignores rec
    output(carry) -> h [B, H]          what the next layer and the readout see (carry[0])
    reference(params, xs, carry, mask, compute_dtype) -> (hs, carry)
        the same recurrence as a plain lax.scan of `step`, differentiated by
        autodiff: the oracle of the tests
    params: the NamedTuple class `init` returns (a layer's params name their cell)
    options: init options the cell takes (e.g. ("forget_bias",)); a config setting a
        cell does not list is refused before any compute
    gates: G, the gate blocks of the parameter columns (LSTM 4, GRU 3, Elman 1)
    forms: the scan forms the cell has: ("sequential",) for a cell nonlinear in its
        state, ("sequential", "parallel") for a linear one (jaxdl.models.linear_scan)
    elementwise: None for a dense cell; for an element-wise one, params ->
        Elementwise(...) (below): the recurrence split from what the step emits, which
        the element-wise estimators (jaxdl.estimators.elementwise) use
    wrapper: True for a cell that wraps another (jaxdl.models.block): not a `model=`
        name of its own, found by cell_of from its params
    stages: the step as in-place updates of its carry's components, in the order it
        computes them: a tuple of (outs, fn), fn(params, carry, x, rec) -> the new values of
        the components `outs` (a tuple of indices), each [B, H], read from the carry as it
        stands (the components of earlier stages already new). Running them in turn
        equals `step`. () for one stage that computes every component from the old carry.
        The LSTM's are ((c,), (h,)): c_t from (h_{t-1}, c_{t-1}), then h_t from
        (h_{t-1}, c_t); SnAp-1 mirrors them to update its influence in place

An element-wise cell's carry is (emitted..., state..., context...): its step is

    ctx    = context(carry)               the part of the previous carry that is neither
                                          emitted nor state: fixed by the inputs, with no
                                          parameter acting on it over time (a causal
                                          convolution's buffer of past inputs); () for most
    state' = rec(params, state, x, ctx)   element-wise in the units: unit u of state'
                                          reads unit u of state only, and parameter
                                          column j (every `recurrent` leaf's last axis,
                                          G*H wide) feeds unit j % H only, except DENSE
                                          leaves, which may feed every unit
    carry' = emit(params, state', x, ctx) position-wise: no state of an earlier step
                                          (the new context included)

`cells()` finds every module of jaxdl.models with a CELL, so adding a cell is one
module (plus conf/model/<name>.yaml and its tests): docs/cells.md.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Callable, NamedTuple

import jax


DENSE = "dense"
"""The `Elementwise.recurrent` flag of a leaf that enters rec through every unit (a
convolution of the inputs before the recurrence: x' feeds every unit's gates). Its influence
on the state is [k, H, *leaf.shape], not [k, *leaf.shape]: exact, at H times the memory."""


def _no_context(carry):
    return ()


class Elementwise(NamedTuple):
    """The element-wise structure of a cell's step (see the module docstring).

    split(carry) -> state                 the k recurrent components, each [B, H]
    rec(params, state, x [B, D], ctx=()) -> state   the element-wise recurrence
    emit(params, state, x, ctx=()) -> carry         the whole carry from the new state
    recurrent(params) -> tuple            per leaf (jax.tree.leaves order): False (acts
                                          through emit only, at the current step), True
                                          (enters rec, column j feeding unit j % H) or
                                          DENSE (enters rec through every unit)
    context(carry) -> ctx                 the previous carry's part rec and emit read
                                          besides the state: a pytree no parameter acts on
                                          over time (default: ())
    """
    split: Callable
    rec: Callable
    emit: Callable
    recurrent: Callable
    context: Callable = _no_context


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
    forms: tuple = ("sequential",)
    elementwise: Callable | None = None
    wrapper: bool = False
    stages: tuple = ()


def hidden_of(params) -> int:
    """H of a layer's params: the width of its output (carry[0])."""
    c = cell_of(params)
    return jax.eval_shape(lambda: c.output(c.carry(params, 1))).shape[-1]


def elementwise_of(params) -> Elementwise | None:
    """The Elementwise structure of a layer whose cell is element-wise, else None."""
    f = cell_of(params).elementwise
    return None if f is None else f(params)


@cache
def _all_cells() -> dict[str, Cell]:
    """Every Cell of jaxdl.models by name (modules that define CELL or CELLS), wrappers too."""
    import jaxdl.models as pkg
    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"jaxdl.models.{info.name}")
        for c in (getattr(mod, "CELL", None), *getattr(mod, "CELLS", ())):
            if isinstance(c, Cell):
                found[c.name] = c
    return found


def cells() -> dict[str, Cell]:
    """Every cell `model=` can name (wrappers such as the blocks excluded)."""
    return {k: c for k, c in _all_cells().items() if not c.wrapper}


def cell_of(layer_params) -> Cell:
    """The cell whose params these are."""
    for c in _all_cells().values():
        if isinstance(layer_params, c.params):
            return c
    raise TypeError(f"{type(layer_params).__name__} is not the params of a registered cell")


def check_form(cell: Cell, form) -> None:
    """Refuse a scan form the cell does not have, naming model.scan."""
    if form not in (None, "auto") and form not in cell.forms:
        raise ValueError(f"model.scan={form}: cell {cell.name!r} has the forms {list(cell.forms)} only "
                         f"(it is not linear in its state); set model.scan=auto")


def get_cell(name: str) -> Cell:
    known = cells()
    if name not in known:
        raise ValueError(f"unknown cell {name!r}; known cells: {sorted(known)} (set model=<one of them>)")
    return known[name]


def sequential_only(name: str, scan: Callable) -> Callable:
    """scan(params, xs, carry, mask, hoist, compute_dtype) of a cell with only the sequential
    form, taking (and checking) the `form` keyword every Cell.scan takes."""
    def run(params, xs, carry, mask=None, hoist=None, compute_dtype=None, form=None):
        if form not in (None, "auto", "sequential"):
            raise ValueError(f"model.scan={form}: cell {name!r} has the sequential form only (it is not "
                             "linear in its state); set model.scan=auto")
        return scan(params, xs, carry, mask, hoist, compute_dtype)
    return run
