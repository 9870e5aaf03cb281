"""Fully connected sigmoid networks and the source text's back-propagation (chapter 3).

Forward, layer by layer (式2):        a^(l+1) = sigmoid(W^(l) a^(l) + b^(l))
Output-layer error term (式3 / 式7):  delta = y (1 - y) (t - y)
Hidden-layer error term (式4 / 式8):  delta^(l) = a^(l) (1 - a^(l)) W^T delta^(l+1)
Update (式5 / 式9 / 式10):            W <- W + eta delta x^T,  b <- b + eta delta

for the error E_d = 1/2 sum_i (t_i - y_i)^2. Here arrays are batched row vectors:
x [B, n_in], W stored as [n_in, n_out] (the transpose of the source text's W), and the
batch's updates are summed. `delta_rule_grads` returns the gradient of E_d
(= -delta x^T, sign included) so that an optax optimizer can apply it; tests
check it against jax.grad.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.models.mlp import mlp_init


def init(key, sizes, init_scheme: str = "uniform_0.1", dtype=jnp.float32):
    """Layers [n0, n1, ..., nL] -> list of {"w": [n_l, n_l+1], "b": [n_l+1]}: the MLP's
    parameters, drawn by default as the source text's fc.py does (U(-0.1, 0.1), zero bias)."""
    return mlp_init(key, sizes, init_scheme, dtype)


def forward(params, x, activation=jax.nn.sigmoid):
    """式2 for every layer: returns the activations [x, a1, ..., y], each [B, n_l]."""
    acts = [x]
    for layer in params:
        acts.append(activation(acts[-1] @ layer["w"] + layer["b"]))
    return acts


def predict(params, x):
    return forward(params, x)[-1]


def sse(params, x, t):
    """The source text's E_d = 1/2 sum (t - y)^2, summed over the batch."""
    return 0.5 * ((t - predict(params, x)) ** 2).sum()


def deltas(params, acts, t):
    """Error terms delta^(l) for every non-input layer, output first computed (式7),
    then back through the hidden layers (式8). Returns [delta^(1), ..., delta^(L)]."""
    y = acts[-1]
    d = y * (1.0 - y) * (t - y)                               # 式3 / 式7
    out = [d]
    for l in range(len(params) - 1, 0, -1):
        a = acts[l]
        d = a * (1.0 - a) * (d @ params[l]["w"].T)            # 式4 / 式8
        out.append(d)
    return out[::-1]


def _grads(params, acts, t):
    ds = deltas(params, acts, t)
    return [{"w": -(a.T @ d), "b": -d.sum(0)} for a, d in zip(acts[:-1], ds)]


def delta_rule_grads(params, x, t):
    """Gradient of E_d by the delta rule: dE/dW^(l) = -a^(l)^T delta^(l+1), dE/db = -sum delta
    (the source text's update 式9/式10 is W <- W - eta * this)."""
    return _grads(params, forward(params, x), t)


def delta_rule_value_and_grad(params, x, t):
    """The batch mean of E_d and its gradient by the delta rule, from one forward pass:
    the (value, grads) pair an optax step takes. x [B, n_in], t [B, n_out]."""
    acts = forward(params, x)
    n = x.shape[0]
    loss = (0.5 * ((t - acts[-1]) ** 2).sum(-1)).mean()
    return loss, jax.tree.map(lambda g: g / n, _grads(params, acts, t))


def delta_rule_update(params, x, t, rate):
    """式9 and 式10 applied directly: W <- W + eta delta x^T, b <- b + eta delta."""
    g = delta_rule_grads(params, x, t)
    return jax.tree.map(lambda p, gi: p - rate * gi, params, g)
