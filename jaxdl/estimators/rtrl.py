"""Real-time recurrent learning (Williams & Zipser 1989), exact, for any cell and any
depth of the stack, from JAX's autodiff primitives (no per-cell derivation).

Per stream, with s the flattened state of every layer (n numbers) and theta every
layer's parameters (params["layers"], p numbers):

    M_t = J_t M_{t-1} + I_t          M_t = ds_t/dtheta [n, p],  J_t = dF/ds_{t-1} [n, n],
                                     I_t = dF/dtheta [n, p] (the immediate influence)
    dL_t/dtheta = dL_t/ds_t . M_t    (plus the readout's own gradient, exact)

J_t and I_t come together from n vector-Jacobian products of F (jax.vjp of the stack
step, vmapped over the n unit cotangents), then M_t = J_t M_{t-1} + I_t is one
[n, n] x [n, p] product. Stacked layers are one state: J_t holds the same-step paths
from lower layers to upper ones, so the result is the exact gradient of the loss over the
whole stream (from the last reset) with the parameters held fixed, for every layer.

Cost per step and stream: time O(n^2 p) (LSTM of H units, one layer: n = 2H, p ~ 4H^2,
so O(H^4)); memory O(n p) for M (O(H^3)). rtrl_memory_bytes estimates it before compute.
M is stored as a pytree like params["layers"] with a leading [n] axis on every leaf.

One element-wise layer (an LRU, minGRU or minLSTM layer, or a block around one;
jaxdl.models.cell.Elementwise): J_t is diagonal per unit, so the exact influence is k
numbers per parameter, and `rtrl` runs jaxdl.estimators.elementwise on it: the same
exact gradient at about the cost of a few forward passes, memory k x p.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxdl.estimators.elementwise import elementwise_estimator, elementwise_memory_bytes, is_elementwise
from jaxdl.estimators.online import (Estimator, batch_step, hold, param_size, stack_step, state_size,
                                     step_loss)

# the layout of the state a checkpoint holds (jaxdl.estimators.STATE_LAYOUTS): the influence
# [n] + each leaf's shape per stream, or the element-wise one in the parameters' shape
STATE_LAYOUT = 1


def exact_elementwise(layers) -> bool:
    """One element-wise layer: where the element-wise influence is exact RTRL."""
    return len(layers) == 1 and is_elementwise(layers)


def _influence_zero(layers):
    n = state_size(layers)
    return jax.tree.map(lambda a: jnp.zeros((n,) + a.shape, a.dtype), layers)


def rtrl(objective) -> Estimator:
    """Exact RTRL over params["layers"] for a jaxdl.objectives `objective`. The estimator
    state is {"M": pytree like params["layers"] with leaves [B, n, *leaf.shape]}."""

    def stream(params, s, est, x, y, w, m):
        layers, readout = params["layers"], params["readout"]
        flat, unravel = ravel_pytree(s)
        F = lambda th, sf: ravel_pytree(stack_step(th, unravel(sf), x))[0]
        new, vjp = jax.vjp(F, layers, flat)
        I, J = jax.vmap(vjp)(jnp.eye(new.size, dtype=new.dtype))     # rows: d new_i / d(theta, s)
        M = jax.tree.map(lambda Mi, Ii: jnp.tensordot(J, Mi, axes=1) + Ii, est["M"], I)
        (_, sums), (g_read, g_s) = jax.value_and_grad(
            lambda r, sf: step_loss(objective, r, layers, unravel(sf), y, w), argnums=(0, 1), has_aux=True)(
            readout, new)
        g_layers = jax.tree.map(lambda Mi: jnp.tensordot(g_s, Mi, axes=1), M)
        s2, M = hold(m, (unravel(new), M), (s, est["M"]))
        return s2, {"M": M}, {"layers": g_layers, "readout": g_read}, sums

    elementwise = elementwise_estimator(objective, "rtrl")
    dense_step = batch_step(stream)

    def init(params, batch, key=None):
        if exact_elementwise(params["layers"]):
            return elementwise.init(params, batch, key)
        z = _influence_zero(params["layers"])
        return {"M": jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape), z)}

    def step(params, *args):
        return (elementwise.step if exact_elementwise(params["layers"]) else dense_step)(params, *args)

    def reset(est):
        return jax.tree.map(jnp.zeros_like, est)

    return Estimator("rtrl", init, reset, step)


def rtrl_memory_bytes(layers, streams: int) -> int:
    """Bytes RTRL holds per member at once for `streams` streams: the influence M_t, the
    immediate influence I_t and the new M_t (3 x n x p each) and J_t (n x n), in the
    params' dtype (one element-wise layer: its influence, elementwise_memory_bytes).
    layers: params["layers"] or their shapes (jax.eval_shape of rnn_init)."""
    if exact_elementwise(layers):
        return elementwise_memory_bytes(layers, streams)
    n = state_size(layers)
    p = param_size(layers)
    item = jax.tree.leaves(layers)[0].dtype.itemsize
    return int(streams * (3 * n * p + n * n) * item)
