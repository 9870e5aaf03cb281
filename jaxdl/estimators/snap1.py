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
leading [k] axis (k x p numbers, not a masked n x p matrix), a matrix leaf's last two axes
swapped (the order in which the vjp of h @ W forms its outer products).

Stacked layers: each layer's parameters keep influence on their own layer's units only; the
input from the layer below is taken as given at each step (its influence on the layer above
across time is dropped, as every off-pattern entry is). dL_t/ds_t of a lower layer is the
exact same-step gradient through the layers above (one vjp of the stack step in an additive
zero "push" on every layer's new carry). So with one layer and unit-diagonal wh (every unit
sees only its own past) SnAp-1 is RTRL exactly; with two layers, the top layer's gradient
still is, the lower layer's is not.

Cost per step and stream: about 2k + 2 forward passes of the stack (time O(k p), O(H^2) for
a layer of H units, as backprop); memory k x p. On a CPU the B x k x p influence's memory
traffic is the price, so the step is batched where it touches M: see `snap1`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.estimators.online import (Estimator, layer_output, layer_step, stack_step,
                                     step_loss, zero_state)

# the layout of the state a checkpoint holds (jaxdl.estimators.STATE_LAYOUTS); 2: M's matrix
# leaves stored with their last two axes swapped (the vjp's layout), same shapes when square
STATE_LAYOUT = 2


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


def _vjp_layout(a, lead: int):
    """A leaf with `lead` leading axes: a matrix leaf's last two axes swapped, a vector leaf
    as it is. M keeps matrix leaves in this order: the vjp of h @ W gives the outer product
    h ct^T as ct h^T transposed, so stored this way I_t is added without a transpose."""
    return jnp.swapaxes(a, -1, -2) if a.ndim - lead >= 2 else a


def _per_unit(coef, a, H: int, lead: int = 1):
    """coef [*lead axes, H] times a [*lead axes, ...], a leaf of M in its stored layout, whose
    unit axis (the parameter's G*H columns) is the last for a vector leaf and the one before
    it for a matrix leaf: column j is scaled by coef[..., j % H], element-wise (coef's lead
    axes broadcast against a's)."""
    ax = a.ndim - 1 if a.ndim - lead == 1 else a.ndim - 2
    shape = a.shape[:ax] + (a.shape[ax] // H, H) + a.shape[ax + 1:]
    cshape = coef.shape[:-1] + (1,) * (ax - lead) + (1, H) + (1,) * (a.ndim - ax - 1)
    out = coef.reshape(cshape) * a.reshape(shape)
    return out.reshape(out.shape[:lead] + a.shape[lead:])


def _materialise(a, spec: str):
    """a itself, as the output of a product with the identity on its last axis: XLA fuses an
    element-wise producer into every consumer and would recompute these small per-unit
    coefficients (their selects and transposes) for each of M's B x k x p numbers; a
    product's result is computed once and stored."""
    return jnp.einsum(f"{spec},{spec[-1]}z->{spec[:-1]}z", a, jnp.eye(a.shape[-1], dtype=a.dtype))


def layer_jacobians(p, c, h_in):
    """One stream's layer step and what SnAp-1 needs of it: (new carry, D [k(a), k(b), H]
    the diagonal blocks of J_t, I_t a pytree like p with leaves [k(a), *leaf] in M's layout)."""
    new = layer_step(p, c, h_in)
    tangents = _one_hot_carries(c)                              # k tuples, each [k, H]
    jvp_b = lambda t: jax.jvp(lambda cc: layer_step(p, cc, h_in, diagonal_rec), (c,), (t,))[1]
    D = jnp.stack(jax.vmap(jvp_b)(tangents), axis=0)            # [a, b, H]
    _, vjp = jax.vjp(lambda pp: layer_step(pp, c, h_in), p)
    (I,) = jax.vmap(vjp)(tangents)                              # leaves [k(a), *leaf.shape]
    return new, D, jax.tree.map(lambda a: _vjp_layout(a, 1), I)


def snap1(objective) -> Estimator:
    """SnAp-1 over params["layers"] for a jaxdl.objectives `objective`. The estimator state is
    {"M": a list over layers of pytrees like each layer's params, leaves [B, k, *leaf.shape]
    with a matrix leaf's last two axes swapped (its vjp's layout)}.

    The step is batched over the B streams where it touches M (B x k x p numbers): the
    per-stream work (the layer step, D_t's k jvps, I_t's k vjps, dL_t/ds_t) is vmapped; then
    one element-wise pass per leaf writes M_t = D_t M_{t-1} + I_t (a held step: D = 1, I = 0),
    and the gradient sum_b sum_a dL/ds^(a)_{b, j%H} M_t[b, a, j] is one element-wise pass over
    M_t and one [B] x [B, p] product per leaf. On a held step the gradient still reads the
    unheld M_t = D_t M_{t-1} + I_t: the M_{t-1} part through D's coefficients, the I_t part as
    the vjp of the batched layer step with the cotangent dL/ds_t (computed only then)."""

    def step(params, carry, est, x, y, w, m):
        layers, readout = params["layers"], params["readout"]
        real = m > 0
        h = x
        news, Ds, Is = [], [], []
        for p, c in zip(layers, carry):
            c2, D, I = jax.vmap(layer_jacobians, in_axes=(None, 0, 0))(p, c, h)
            news.append(c2), Ds.append(D), Is.append(I)
            h = jax.vmap(lambda cc: layer_output(p, cc))(c2)
        push = jax.tree.map(jnp.zeros_like, carry)

        def loss(r, push):
            def one(s, xb, yb, wb, pb):
                return step_loss(objective, r, layers, stack_step(layers, s, xb, pb), yb, wb)
            val, sums = jax.vmap(one)(carry, x, y, w, push)
            return val.sum(), jax.tree.map(lambda a: a.sum(0), sums)
        (_, sums), (g_read, g_push) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(readout, push)

        Ms, g_layers, h = [], [], x
        for p, c, c2, D, I, M, gc in zip(layers, carry, news, Ds, Is, est["M"], g_push):
            k, H = D.shape[1], D.shape[-1]
            eye = jnp.eye(k, dtype=D.dtype)[None, :, :, None]
            gs = jnp.stack(gc, axis=1)                                        # [B, k, H]: dL_t/ds_t
            # D_t (a held step's: the identity) and the coefficient of M_t[b, c] in the gradient
            # (a held stream: of M_{t-1}, through D_t), each computed once
            Dh = _materialise(jnp.where(real[:, None, None, None], D, eye), "bacu")
            keep = real.astype(D.dtype)
            coef = _materialise(jnp.where(real[:, None, None], gs, jnp.einsum("bau,bacu->bcu", gs, D)), "bcu")
            Mt = jax.tree.map(
                lambda Ml, Il: sum(_per_unit(Dh[:, :, b], Ml[:, b:b + 1], H, 2) for b in range(k))
                + keep.reshape((-1,) + (1,) * (Il.ndim - 1)) * Il, M, I)
            g = jax.tree.map(lambda Ml: _gradient(coef, Ml, H), Mt)
            held_g = jax.lax.cond(
                jnp.all(real), lambda: jax.tree.map(jnp.zeros_like, p),
                lambda: jax.vjp(lambda pp: jax.vmap(lambda cc, hh: layer_step(pp, cc, hh))(c, h), p)[1](
                    jax.tree.map(lambda a: jnp.where(real[:, None], 0.0, a), gc))[0])
            g_layers.append(jax.tree.map(jnp.add, g, held_g))
            Ms.append(Mt)
            h = jax.vmap(lambda cc: layer_output(p, cc))(c2)
        new = jax.tree.map(lambda a, b: jnp.where(real[:, None], a, b), tuple(news), tuple(carry))
        return new, {"M": Ms}, {"layers": g_layers, "readout": g_read}, sums

    def init(params, batch, key=None):
        zero = zero_state(params["layers"])
        return {"M": [jax.tree.map(lambda a: _vjp_layout(jnp.zeros((batch, len(c)) + a.shape, a.dtype), 2), p)
                      for p, c in zip(params["layers"], zero)]}

    def reset(est):
        return jax.tree.map(jnp.zeros_like, est)

    return Estimator("snap1", init, reset, step)


def _gradient(coef, Ml, H: int):
    """sum_b sum_a coef[b, a, j % H] Ml[b, a, j] for a leaf of M [B, k, ...] in its stored
    layout -> the parameter's gradient in the parameter's layout: one element-wise pass
    over the k components, then one [B] x [B, p] product."""
    B, k = Ml.shape[:2]
    X = sum(_per_unit(coef[:, a], Ml[:, a], H) for a in range(k))                   # [B, ...]
    g = (jnp.ones((B,), Ml.dtype) @ X.reshape(B, -1)).reshape(X.shape[1:])
    return _vjp_layout(g, 0)


def snap1_memory_bytes(layers, streams: int) -> int:
    """Bytes of SnAp-1's influence per member: k x p per stream, in the params' dtype."""
    zero = zero_state(layers)
    return int(streams * sum(len(c) * a.size * a.dtype.itemsize
                             for p, c in zip(layers, zero) for a in jax.tree.leaves(p)))
