"""Fully connected layers as pure functions: y = x @ W + b (the source text's 式2 with W^T)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def dense_init(key, in_dim: int, out_dim: int, dtype=jnp.float32, init: str = "glorot"):
    """Params {"w": [in, out], "b": [out]}. init: glorot (Keras default) or
    "uniform_0.1" (the source text's fc.py: U(-0.1, 0.1))."""
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"Dense sizes must be >= 1, got in={in_dim}, out={out_dim}")
    if init == "glorot":
        w = jax.nn.initializers.glorot_uniform()(key, (in_dim, out_dim), dtype)
    elif init == "uniform_0.1":
        w = jax.random.uniform(key, (in_dim, out_dim), dtype, -0.1, 0.1)
    elif init == "he":
        w = jax.nn.initializers.he_normal()(key, (in_dim, out_dim), dtype)
    else:
        raise ValueError(f"unknown init {init!r}; use glorot, he or uniform_0.1")
    return {"w": w, "b": jnp.zeros((out_dim,), dtype)}


def dense_apply(params, x):
    """x [..., in] -> [..., out]. The leading axes stay separate axes of one dot_general
    (no reshape): x [T, B, H] split along B on a device mesh stays split, and the weight
    gradient is a contraction over t and b whose partial sums are all-reduced."""
    return x @ params["w"] + params["b"]
