"""Activation functions by name, shared by the MLPs and the workflow layers."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _identity(z):
    return z


ACTIVATIONS = {
    None: _identity, "none": _identity, "linear": _identity,
    "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu,
    "softmax": lambda z: jax.nn.softmax(z, axis=-1),
}


def get_activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {[k for k in ACTIVATIONS if k]}")
    return ACTIVATIONS[name]
