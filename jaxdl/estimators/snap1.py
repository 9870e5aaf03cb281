"""SnAp-1 (Menick, Elsen, Evci, Osindero, Simonyan & Graves 2021, arXiv 2006.07232): RTRL
with the influence kept only on the immediate Jacobian's sparsity pattern.

In a cell of jaxdl.models.cell, parameter column j (of every leaf, last axis G*H) feeds
unit u = j % H of its own layer, and only through it the rest of the network. SnAp-1 keeps
M_t[a, j] = d s^(a)_{t, j%H} / d theta[..., j] for each of the layer's k carry components a
(LSTM: h and c, k = 2; GRU and Elman: h, k = 1) and drops every other entry:

    M_t[a, j] = sum_b D_t[a, b, j%H] M_{t-1}[b, j] + I_t[a, j]
    D_t[:, :, u]  the k x k diagonal block of unit u in J_t = ds_t/ds_{t-1}
    I_t[a, j]     d s^(a)_{t, j%H} / d theta[..., j], the immediate influence (exact: column j
                  reaches no other unit within a step)
    dL_t/dtheta[..., j] ~ sum_a dL_t/ds^(a)_{t, j%H} M_t[a, j]

D_t, generically for any cell: the step is called with rec(h, wh) = stop_gradient(h) @
(wh * (1 - D)) + h @ (wh * D), D[i, j] = 1 iff j % H == i: the same value, whose derivative
in h keeps only each unit's own columns, so k jvps (tangent: ones on one carry component of
every unit) give every unit's k x k block exactly. I_t: k vjps in theta (cotangent: ones on
one carry component). M_t is stored compactly: per layer, a pytree like its params with a
leading [k] axis (k x p numbers, not a masked n x p matrix).

Stacked layers: each layer's parameters keep influence on their own layer's units only; the
input from the layer below is taken as given at each step (its influence on the layer above
across time is dropped, as every off-pattern entry is). dL_t/ds_t of a lower layer is the
exact same-step gradient through the layers above (one vjp of the stack step in an additive
zero "push" on every layer's new carry). So with one layer and unit-diagonal wh (every unit
sees only its own past) SnAp-1 is RTRL exactly; with two layers, the top layer's gradient
still is, the lower layer's is not.

Cost per step and stream: about 2k + 2 forward passes of the stack (time O(k p), O(H^2) for
a layer of H units, as backprop); memory k x p.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.estimators.online import (Estimator, batch_step, hold, layer_output, layer_step, stack_step,
                                     step_loss, zero_state)


def unit_mask(H: int, K: int, dtype) -> jax.Array:
    """D [H, K]: D[i, j] = 1 iff j % H == i (column j feeds unit i)."""
    return (jnp.arange(K)[None, :] % H == jnp.arange(H)[:, None]).astype(dtype)


def diagonal_rec(h, wh):
    """h @ wh in value; its derivative in h keeps only each unit's own columns."""
    D = unit_mask(wh.shape[0], wh.shape[1], wh.dtype)
    return jax.lax.stop_gradient(h) @ (wh * (1 - D)) + h @ (wh * D)


def _one_hot_carries(carry):
    """k tangents/cotangents for a carry of k [H] arrays: the b-th is ones on component b."""
    k = len(carry)
    return tuple(jnp.stack([jnp.full_like(c, 1.0 if a == b else 0.0) for b in range(k)])
                 for a, c in enumerate(carry))


def _by_unit(block, width: int):
    """[..., H] -> [..., width]: entry j is block[..., j % H]."""
    return jnp.tile(block, (1,) * (block.ndim - 1) + (width // block.shape[-1],))


def layer_influence(p, c, h_in, M):
    """One layer's SnAp-1 update: (new carry, M_t) from carry c (k arrays [H]), input h_in,
    M_{t-1} (pytree like p, leaves [k, *leaf.shape])."""
    new = layer_step(p, c, h_in)
    tangents = _one_hot_carries(c)                              # k tuples, each [k, H]
    jvp_b = lambda t: jax.jvp(lambda cc: layer_step(p, cc, h_in, diagonal_rec), (c,), (t,))[1]
    Dt = jax.vmap(jvp_b)(tangents)                              # tuple over a of [k(b), H]
    D = jnp.stack(Dt, axis=0)                                   # [a, b, H]
    _, vjp = jax.vjp(lambda pp: layer_step(pp, c, h_in), p)
    (I,) = jax.vmap(vjp)(tangents)                              # leaves [k(a), *leaf.shape]
    M = jax.tree.map(
        lambda Mi, Ii: jnp.einsum("abj,b...j->a...j", _by_unit(D, Mi.shape[-1]), Mi) + Ii, M, I)
    return new, M


def snap1(objective) -> Estimator:
    """SnAp-1 over params["layers"] for a jaxdl.objectives `objective`. The estimator state is
    {"M": a list over layers of pytrees like each layer's params, leaves [B, k, *leaf.shape]}."""

    def stream(params, s, est, x, y, w, m):
        layers, readout = params["layers"], params["readout"]
        Ms, h = [], x
        for p, c, Mi in zip(layers, s, est["M"]):
            c2, Mi = layer_influence(p, c, h, Mi)
            Ms.append(Mi)
            h = layer_output(p, c2)
        push = jax.tree.map(jnp.zeros_like, s)

        def loss(r, push):
            new = stack_step(layers, s, x, push)
            val, sums = step_loss(objective, r, layers, new, y, w)
            return val, (sums, new)
        (_, (sums, new)), (g_read, g_push) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(readout, push)
        g_layers = []
        for Mi, gc in zip(Ms, g_push):
            gs = jnp.stack(gc)                                  # [k, H]: dL_t/ds_t of this layer
            g_layers.append(jax.tree.map(
                lambda a: jnp.einsum("aj,a...j->...j", _by_unit(gs, a.shape[-1]), a), Mi))
        s2, Ms = hold(m, (new, Ms), (s, est["M"]))
        return s2, {"M": Ms}, {"layers": g_layers, "readout": g_read}, sums

    def init(params, batch, key=None):
        zero = zero_state(params["layers"])
        return {"M": [jax.tree.map(lambda a: jnp.zeros((batch, len(c)) + a.shape, a.dtype), p)
                      for p, c in zip(params["layers"], zero)]}

    def reset(est):
        return jax.tree.map(jnp.zeros_like, est)

    return Estimator("snap1", init, reset, batch_step(stream))


def snap1_memory_bytes(layers, streams: int) -> int:
    """Bytes of SnAp-1's influence per member: k x p per stream, in the params' dtype."""
    zero = zero_state(layers)
    return int(streams * sum(len(c) * a.size * a.dtype.itemsize
                             for p, c in zip(layers, zero) for a in jax.tree.leaves(p)))
