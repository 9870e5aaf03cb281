"""The online transition of a whole recurrent stack, one stream at a time: what the online
gradient estimators (RTRL, UORO, SnAp-1) differentiate, and the interface they share.

Notation (Williams & Zipser 1989; Marschall, Cho & Savin 2020). For one stream,

    s_t = F(theta, s_{t-1}, x_t)        s: every layer's carry (a tuple of per-layer cell
                                          carries, each a tuple of [H] arrays), n numbers
    y_t = readout(top h_t)              the Dense readout on the top layer's output
    L_t = w_t * loss(y_t, target_t)     the task's per-step objective, weighted

F runs each layer's Cell.step (jaxdl.models.cell) bottom-up: layer l reads the new
output of layer l - 1 at the same step. theta are the recurrent parameters
(params["layers"], p numbers); the readout's gradient dL_t/dW_out is exact at every step.

An estimator keeps an influence state beside s (M_t ~ ds_t/dtheta) and, per step, returns
the weighted gradient estimate of L_t. All functions here are per stream (no batch axis);
the estimators vmap them over the B streams of a batch.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import cell_of
from jaxdl.models.dense import dense_apply


class Estimator(NamedTuple):
    """An online gradient estimator: pure functions of one member, over a batch of B streams.

    init(params, batch, key) -> est          the influence state of B streams (zero influence)
    reset(est) -> est                        influence back to zero (the reset policies call it
                                             with the recurrent state); noise keys are kept
    step(params, carry, est, x [B, ...], y [B, ...], weight [B], mask [B])
        -> (carry, est, grads, sums)          grads: sum over streams of w * dL_t/dparams
                                             (a params pytree); sums: {metric: sum of w * value}
    steps(params, carry, est, xs [n, B, ...], ys [n, B, ...], weights [n, B], masks [n, B])
        -> (carry, est, grads, sums)          n steps with the parameters fixed, grads and sums
                                             added over them: what n calls of step give (None:
                                             the trainer scans step; `run_steps`)
    name: "rtrl" | "uoro" | "snap1"
    """
    name: str
    init: Callable
    reset: Callable
    step: Callable
    steps: Callable | None = None


def run_steps(est: Estimator, params, carry, state, xs, ys, weights, masks):
    """n estimator steps with the parameters fixed ([n, B, ...] inputs) -> (carry, state,
    grads, sums), grads and sums added over the steps: est.steps where the estimator has a
    form for n steps at once, else est.step in a scan."""
    if est.steps is not None:
        return est.steps(params, carry, state, xs, ys, weights, masks)

    def body(acc, inp):
        carry, state, g, sums = acc
        carry, state, g1, s1 = est.step(params, carry, state, *inp)
        add = lambda a, b: jax.tree.map(jnp.add, a, b)
        return (carry, state, add(g, g1), add(sums, s1)), None
    first = jax.tree.map(lambda a: a[0], (xs, ys, weights, masks))
    shapes = jax.eval_shape(lambda: est.step(params, carry, state, *first))
    zeros = lambda t: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), t)
    return jax.lax.scan(body, (carry, state, zeros(shapes[2]), zeros(shapes[3])), (xs, ys, weights, masks))[0]


def _one(tree):
    return jax.tree.map(lambda a: a[None], tree)


def _unone(tree):
    return jax.tree.map(lambda a: a[0], tree)


def layer_step(layer_params, carry, x, rec=jnp.matmul):
    """One layer's cell step for one stream: carry (tuple of [H]), x [D] -> carry."""
    c = cell_of(layer_params)
    return _unone(c.step(layer_params, _one(carry), x[None], rec))


def layer_output(layer_params, carry):
    """The layer's output h [H] from its carry (one stream)."""
    return _unone(cell_of(layer_params).output(_one(carry)))


def stack_step(layers, state, x, push=None):
    """F(theta, s, x) for one stream: layers = params["layers"], state = tuple of per-layer
    carries, x [D] -> the new state. push (a pytree like state, or None) is added to each
    layer's new carry before the layer above reads it: zero in value, its gradient is
    dL_t/ds_t of every layer through the same step's upward path (SnAp-1 uses it)."""
    new = []
    h = x
    for i, (p, c) in enumerate(zip(layers, state)):
        c2 = layer_step(p, c, h)
        if push is not None:
            c2 = jax.tree.map(jnp.add, c2, push[i])
        new.append(c2)
        h = layer_output(p, c2)
    return tuple(new)


def top_output(layers, state):
    """The top layer's h [H] (what the readout reads)."""
    return layer_output(layers[-1], state[-1])


def step_loss(objective: Callable, readout, layers, state, y, weight):
    """(w * loss_t, {metric: w * value}) of the readout on the top output of `state`;
    objective is a jaxdl.objectives function (per-step metrics dict with "loss")."""
    pred = dense_apply(readout, top_output(layers, state)[None])
    m = _unone(objective(pred, _one(y)))
    m = {k: weight * v for k, v in m.items()}
    return m["loss"], m


def hold(mask, new, old):
    """new where mask (a real step), old where not (a held, padded step): the state and the
    influence stay put on held steps."""
    return jax.tree.map(lambda a, b: jnp.where(mask > 0, a, b), new, old)


def zero_state(layers):
    """The zero state of one stream: a tuple of per-layer carries of [H] arrays."""
    return tuple(_unone(cell_of(p).carry(p, 1)) for p in layers)


def state_size(layers) -> int:
    """n: numbers in one stream's state (every layer's carry)."""
    return sum(a.size for a in jax.tree.leaves(zero_state(layers)))


def param_size(layers) -> int:
    """p: numbers in the recurrent parameters (params["layers"])."""
    return sum(a.size for a in jax.tree.leaves(layers))


def batch_step(stream_step: Callable):
    """A batch step from a per-stream one: stream_step(params, s, est, x, y, w, m, *extra)
    -> (s, est, grads, sums) is vmapped over the B streams (every argument but params has a
    leading B axis); grads and sums are summed over the streams."""
    def step(params, carry, est, x, y, weight, mask, *extra):
        n_extra = (0,) * len(extra)
        s, est, g, sums = jax.vmap(stream_step, in_axes=(None, 0, 0, 0, 0, 0, 0) + n_extra)(
            params, carry, est, x, y, weight, mask, *extra)
        total = lambda t: jax.tree.map(lambda a: a.sum(0), t)
        return s, est, total(g), total(sums)
    return step

