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
Stacked layers are one state, as in RTRL. Cost per step and stream: about 3 forward passes
of the stack (time O(p)); memory O(n + p).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxdl.estimators.online import Estimator, batch_step, hold, stack_step, state_size, step_loss

EPS = 1e-7


def _norm(tree):
    return jnp.sqrt(sum((a * a).sum() for a in jax.tree.leaves(tree)))


def uoro(objective, eps: float = EPS) -> Estimator:
    """UORO over params["layers"] for a jaxdl.objectives `objective`. The estimator state is
    {"s": [B, n], "theta": pytree like params["layers"] with leaves [B, *leaf.shape],
    "key": a PRNG key (one per member)}."""

    def stream(params, s, est, x, y, w, m, nu):
        layers, readout = params["layers"], params["readout"]
        flat, unravel = ravel_pytree(s)
        F = lambda th, sf: ravel_pytree(stack_step(th, unravel(sf), x))[0]
        new, Js = jax.jvp(lambda sf: F(layers, sf), (flat,), (est["s"],))
        _, vjp = jax.vjp(lambda th: F(th, flat), layers)
        (nuI,) = vjp(nu)
        rho0 = jnp.sqrt(_norm(est["theta"]) / (_norm(Js) + eps)) + eps
        rho1 = jnp.sqrt(_norm(nuI) / (_norm(nu) + eps)) + eps
        s_t = rho0 * Js + rho1 * nu
        th_t = jax.tree.map(lambda a, b: a / rho0 + b / rho1, est["theta"], nuI)
        (_, sums), (g_read, g_s) = jax.value_and_grad(
            lambda r, sf: step_loss(objective, r, layers, unravel(sf), y, w), argnums=(0, 1), has_aux=True)(
            readout, new)
        g_layers = jax.tree.map(lambda a: jnp.dot(g_s, s_t) * a, th_t)
        s2, s_t, th_t = hold(m, (unravel(new), s_t, th_t), (s, est["s"], est["theta"]))
        return s2, {"s": s_t, "theta": th_t}, {"layers": g_layers, "readout": g_read}, sums

    streams = batch_step(lambda p, s, e, x, y, w, m, nu: stream(p, s, e, x, y, w, m, nu))

    def step(params, carry, est, x, y, w, m):
        key, sub = jax.random.split(est["key"])
        nu = jax.random.rademacher(sub, est["s"].shape, est["s"].dtype)
        inner = {"s": est["s"], "theta": est["theta"]}
        carry, inner, g, sums = streams(params, carry, inner, x, y, w, m, nu)
        return carry, {**inner, "key": key}, g, sums

    def init(params, batch, key):
        layers = params["layers"]
        dt = jax.tree.leaves(layers)[0].dtype
        return {"s": jnp.zeros((batch, state_size(layers)), dt),
                "theta": jax.tree.map(lambda a: jnp.zeros((batch,) + a.shape, a.dtype), layers),
                "key": key}

    def reset(est):
        return {"s": jnp.zeros_like(est["s"]), "theta": jax.tree.map(jnp.zeros_like, est["theta"]),
                "key": est["key"]}

    return Estimator("uoro", init, reset, step)
