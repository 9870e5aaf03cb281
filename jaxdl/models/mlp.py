"""Multilayer perceptrons as pure functions: sizes [n_in, h1, ..., n_out],
a hidden activation, and an output activation (sigmoid for the source text's networks,
none for logits)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.models.activations import get_activation
from jaxdl.models.dense import dense_init


def mlp_init(key, sizes, init: str = "glorot", dtype=jnp.float32):
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"layer sizes must be >= 1 and at least two, got {list(sizes)}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [dense_init(k, a, b, dtype, init) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp_apply(params, x, hidden: str = "sigmoid", output: str = "sigmoid"):
    """x [B, n_in] -> [B, n_out]."""
    h_act, o_act = get_activation(hidden), get_activation(output)
    for i, layer in enumerate(params):
        x = x @ layer["w"] + layer["b"]
        x = o_act(x) if i == len(params) - 1 else h_act(x)
    return x
