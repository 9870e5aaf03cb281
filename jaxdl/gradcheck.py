"""Gradient checking by central differences, the source text's 式6:

    dE/dw ~= (E(w + eps) - E(w - eps)) / (2 eps),   eps = 1e-4

`gradient_check` perturbs every element of every parameter leaf and reports, per
leaf, the largest relative error against the analytic gradient. Use float64
(jax_enable_x64) for a meaningful check; the tests run it on every model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def relative_error(a, b, floor: float = 1e-6):
    """|a - b| / max(|a|, |b|, floor), elementwise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)


def numerical_gradient(loss_fn, params, eps: float = 1e-4):
    """Central differences (式6) of scalar loss_fn(params) for every parameter element."""
    f = jax.jit(loss_fn)
    leaves, treedef = jax.tree.flatten(params)
    grads = []
    for li, leaf in enumerate(leaves):
        flat = np.asarray(leaf, dtype=np.float64).ravel()
        g = np.zeros_like(flat)
        for k in range(flat.size):
            def at(delta):
                v = flat.copy()
                v[k] += delta
                new = list(leaves)
                new[li] = jnp.asarray(v.reshape(np.shape(leaf)), dtype=leaf.dtype)
                return float(f(jax.tree.unflatten(treedef, new)))
            g[k] = (at(eps) - at(-eps)) / (2 * eps)
        grads.append(g.reshape(np.shape(leaf)))
    return jax.tree.unflatten(treedef, grads)


def gradient_check(loss_fn, params, grads=None, eps: float = 1e-4, floor: float = 1e-6) -> dict:
    """Largest relative error per parameter leaf between `grads` (default: jax.grad
    of loss_fn) and central differences. Returns {"path/to/leaf": max_rel_err}."""
    if grads is None:
        grads = jax.grad(loss_fn)(params)
    num = numerical_gradient(loss_fn, params, eps)
    out = {}
    for (path, a), n in zip(jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(num)):
        out[jax.tree_util.keystr(path)] = float(relative_error(a, n, floor).max())
    return out
