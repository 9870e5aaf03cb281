"""Unbiased Online Recurrent Optimization (Tallec & Ollivier 2018, arXiv 1702.05043):
a rank-one, unbiased stochastic estimate of RTRL's influence, M_t ~ s~_t theta~_t^T.

Per stream, with s the flattened state of every layer (n numbers), theta = params["layers"]
and nu_t random signs (n of them, +-1 with probability 1/2):

    s~_t     = rho0 J_t s~_{t-1} + rho1 nu_t                 (one jvp of F in s)
    theta~_t = theta~_{t-1} / rho0 + (nu_t^T I_t) / rho1       (one vjp of F in theta)
    rho0 = sqrt(|theta~_{t-1}| / (|J_t s~_{t-1}| + eps)) + eps
    rho1 = sqrt(|nu_t^T I_t| / (|nu_t| + eps)) + eps         (the variance-minimising scalars)
    dL_t/dtheta ~ (dL_t/ds_t . s~_t) theta~_t                 (plus the readout's exact gradient)

E[s~_t theta~_t^T] = M_t exactly: the cross terms carry one factor nu_t, and rho1 is even in
nu_t, so they vanish in expectation. The noise comes from a PRNG key kept in the estimator
state (split once per step), so it is checkpointed and a resumed run draws the same signs.
Stacked layers are one state, as in RTRL.

The price (Tallec & Ollivier: about the cost of a forward pass per step). The n-sized work
(the jvp, the vjp's backward through the step) is per stream and vmapped; theta~ [B, p] is
what costs, so the step touches it as few times as it can, batched over the B streams:
one multiply-add writes theta~_t (the hold of a masked step folded into its two per-stream
scalars, the outer products of nu^T I_t formed in the same pass), one read gives
|theta~_{t-1}|, and the gradient

    sum_b c_b theta~_{t,b} (unheld) = sum_b k_b theta~_{t,b} (stored) + sum_b c_b [held_b] (nu_b^T I_b) / rho1_b,
    c_b = dL_t/ds_t . s~_t,   k_b = c_b, or c_b / rho0_b on a held step

is one [B] x [B, p] product, plus, only on a held step, one vjp of the batched step (the
per-stream outer products summed as one matmul, never stored). |nu^T I_t| needs no pass over
p numbers per stream for the recurrent weight: wh enters a cell only as rec(h, wh) = h @ wh,
so its part of nu^T I_t is h g^T and |h g^T| = |h| |g|. The signs are drawn as bits,
32 per random word. Memory O(n + p) per stream.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxdl.estimators.online import Estimator, layer_output, layer_step, stack_step, state_size, step_loss

EPS = 1e-7
# the layout of the state a checkpoint holds (jaxdl.estimators.STATE_LAYOUTS); 2: theta~'s matrix
# leaves stored with their last two axes swapped (the vjp's layout), same shapes when square
STATE_LAYOUT = 2


def rademacher_bits(key, shape, dtype) -> jax.Array:
    """+-1 with probability 1/2 each, independent: one bit of a random uint32 word per sign
    (shape [..., n]; 32 signs per word, so 1/32 of jax.random.rademacher's random words)."""
    n = shape[-1]
    words = jax.random.bits(key, shape[:-1] + (-(-n // 32),), jnp.uint32)
    bits = (words[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    bits = bits.reshape(shape[:-1] + (-1,))[..., :n]
    return (2 * bits.astype(dtype) - 1).astype(dtype)


def _sq(tree):
    """Per-stream squared norm of a pytree of [B, ...] leaves -> [B]."""
    return sum(jnp.einsum("bi,bi->b", a.reshape(a.shape[0], -1), a.reshape(a.shape[0], -1))
               for a in jax.tree.leaves(tree))


def _combine(coef, tree):
    """sum_b coef_b tree_b for a pytree of [B, ...] leaves: one [B] x [B, p] product per leaf."""
    return jax.tree.map(lambda a: (coef @ a.reshape(a.shape[0], -1)).reshape(a.shape[1:]), tree)


def _swap(a):
    """[B, ..., r, c] -> [B, ..., c, r] for a matrix leaf (ndim >= 3 with the B axis); a vector
    leaf as it is. theta~ keeps matrix leaves in this order: the vjp of h @ W yields the outer
    product h ct^T as ct h^T transposed, so stored this way it is written without a transpose."""
    return jnp.swapaxes(a, -1, -2) if a.ndim >= 3 else a


def uoro(objective, eps: float = EPS) -> Estimator:
    """UORO over params["layers"] for a jaxdl.objectives `objective`. The estimator state is
    {"s": [B, n], "theta": pytree like params["layers"] with leaves [B, *leaf.shape] (a matrix
    leaf's last two axes swapped: `_swap`), "key": a PRNG key (one per member)}."""

    def flat_step(layers, s, x):
        """F on one stream's flattened state: (flat s_{t-1}, unravel) -> flat s_t."""
        flat, unravel = ravel_pytree(s)
        return flat, unravel, lambda th, sf: ravel_pytree(stack_step(th, unravel(sf), x))[0]

    def forward(layers, s, s_tilde, x, nu):
        """One stream: s_t (flat), J_t s~_{t-1}, u = nu^T I_t (a pytree like layers) and |u|^2.
        A recurrent weight wh enters the step only as rec(h, wh) = h @ wh (the cell
        interface), so its part of u is the outer product h g^T, g = nu^T d s_t / d(h @ wh),
        and |h g^T|^2 = |h|^2 |g|^2: the vjp in a zero added to each layer's h @ wh gives g,
        and u's largest leaf is never summed (nor stored: the update forms it)."""
        flat, unravel, F = flat_step(layers, s, x)
        new, Js = jax.jvp(lambda sf: F(layers, sf), (flat,), (s_tilde,))
        zs = [jnp.zeros((1, p.wh.shape[-1]), p.wh.dtype) if hasattr(p, "wh") else None for p in layers]

        def probed(th, zs):
            seen = []

            def rec_of(z):
                def rec(h, wh):
                    seen.append(h)
                    return h @ wh + z
                return rec
            hh, out = x, []
            for p, c, z in zip(th, unravel(flat), zs):
                c2 = layer_step(p, c, hh, jnp.matmul if z is None else rec_of(z))
                out.append(c2)
                hh = layer_output(p, c2)
            return ravel_pytree(tuple(out))[0], seen
        _, vjp, seen = jax.vjp(probed, layers, zs, has_aux=True)
        if len(seen) != sum(z is not None for z in zs):
            raise ValueError("a cell with a recurrent weight wh must compute h @ wh as rec(h, wh), once per step "
                             "(jaxdl.models.cell); UORO's norm of nu^T I_t relies on it")
        u, gz = vjp(nu)
        sq, k = 0.0, 0
        for p, up, g in zip(layers, u, gz):
            if g is None:
                sq = sq + sum((a * a).sum() for a in jax.tree.leaves(up))
                continue
            h = seen[k]
            k += 1
            sq = sq + (h * h).sum() * (g * g).sum() + sum(
                (a * a).sum() for name, a in zip(p._fields, up) if name != "wh")
        return new, Js, u, sq

    def immediate_sum(layers, s, x, cot):
        """sum_b cot_b^T I_b: the vjp in theta of the batched step (one matmul per leaf)."""
        def F(th):
            return jax.vmap(lambda sb, xb: flat_step(th, sb, xb)[2](th, ravel_pytree(sb)[0]))(s, x)
        return jax.vjp(F, layers)[1](cot)[0]

    def step(params, carry, est, x, y, w, m):
        layers, readout = params["layers"], params["readout"]
        key, sub = jax.random.split(est["key"])
        nu = rademacher_bits(sub, est["s"].shape, est["s"].dtype)
        new, Js, u, usq = jax.vmap(forward, in_axes=(None, 0, 0, 0, 0))(layers, carry, est["s"], x, nu)
        u = jax.tree.map(_swap, u)
        norm = lambda a: jnp.sqrt(jnp.einsum("bi,bi->b", a, a))
        rho0 = jnp.sqrt(jnp.sqrt(_sq(est["theta"])) / (norm(Js) + eps)) + eps            # [B]
        rho1 = jnp.sqrt(jnp.sqrt(usq) / (norm(nu) + eps)) + eps
        s_t = rho0[:, None] * Js + rho1[:, None] * nu
        unravel = ravel_pytree(jax.tree.map(lambda a: a[0], carry))[1]

        def loss(r, sf):
            val, sums = jax.vmap(lambda sb, yb, wb: step_loss(objective, r, layers, unravel(sb), yb, wb))(sf, y, w)
            return val.sum(), jax.tree.map(lambda a: a.sum(0), sums)
        (_, sums), (g_read, g_s) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(readout, new)
        c = jnp.einsum("bi,bi->b", g_s, s_t)                                             # [B]
        real = m > 0
        # theta~_t, held where m = 0 (theta~_{t-1} kept): one multiply-add per number
        a0, a1 = jnp.where(real, 1 / rho0, 1.0), jnp.where(real, 1 / rho1, 0.0)
        bc = lambda v, t: v.reshape((-1,) + (1,) * (t.ndim - 1))
        theta = jax.tree.map(lambda t, ui: bc(a0, t) * t + bc(a1, ui) * ui, est["theta"], u)
        # c_b times the unheld theta~_t: the stored one, and on a held step theta~_{t-1} / rho0 + u / rho1
        g_layers = jax.tree.map(
            lambda a, b: _swap(a[None])[0] + b,
            _combine(jnp.where(real, c, c / rho0), theta),
            jax.lax.cond(jnp.all(real), lambda: jax.tree.map(jnp.zeros_like, layers),
                         lambda: immediate_sum(layers, carry, x, jnp.where(real, 0.0, c / rho1)[:, None] * nu)))
        s2 = jax.vmap(unravel)(jnp.where(real[:, None], new, jax.vmap(lambda sb: ravel_pytree(sb)[0])(carry)))
        s_t = jnp.where(real[:, None], s_t, est["s"])
        return s2, {"s": s_t, "theta": theta, "key": key}, {"layers": g_layers, "readout": g_read}, sums

    def init(params, batch, key):
        layers = params["layers"]
        dt = jax.tree.leaves(layers)[0].dtype
        return {"s": jnp.zeros((batch, state_size(layers)), dt),
                "theta": jax.tree.map(lambda a: _swap(jnp.zeros((batch,) + a.shape, a.dtype)), layers),
                "key": key}

    def reset(est):
        return {"s": jnp.zeros_like(est["s"]), "theta": jax.tree.map(jnp.zeros_like, est["theta"]),
                "key": est["key"]}

    return Estimator("uoro", init, reset, step)
