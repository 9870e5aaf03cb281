"""Stacked LSTM layers with a Dense readout on every step: the sequence model the
trainers use. Pure functions; carry is a tuple of (h, c) per layer.

    rnn_init(key, in_dim, hidden, out_dim, layers) -> params
    rnn_apply(params, xs [T, B, D], carry, mask [T, B] | None) -> (ys [T, B, O], carry)
    rnn_apply_last(params, xs, carry, mask) -> (y [B, O], carry)   readout on the last step only
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.models.dense import dense_apply, dense_init
from jaxdl.models.lstm import lstm_init, lstm_scan, zero_carry


def rnn_init(key, in_dim: int, hidden: int, out_dim: int, layers: int = 1,
             forget_bias: float = 1.0, dtype=jnp.float32):
    """Params {"lstm": [LSTMParams per layer], "readout": dense params}."""
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    keys = jax.random.split(key, layers + 1)
    lstm = [lstm_init(keys[i], in_dim if i == 0 else hidden, hidden, forget_bias, dtype)
            for i in range(layers)]
    return {"lstm": lstm, "readout": dense_init(keys[-1], hidden, out_dim, dtype)}


def rnn_carry(params, batch: int):
    """Zero state for every layer: tuple of (h [B, H], c [B, H])."""
    return tuple(zero_carry(batch, p.wh.shape[0], p.wh.dtype) for p in params["lstm"])


def rnn_features(params, xs, carry, mask=None, hoist=None):
    """Top LSTM layer's hidden states hs [T, B, H] and the new carry."""
    new = []
    h = xs
    for p, c in zip(params["lstm"], carry):
        h, c2 = lstm_scan(p, h, c, mask, hoist)
        new.append(c2)
    return h, tuple(new)


def rnn_apply(params, xs, carry, mask=None, hoist=None):
    """Readout on every step: xs [T, B, D] -> ys [T, B, O], carry."""
    hs, carry = rnn_features(params, xs, carry, mask, hoist)
    return dense_apply(params["readout"], hs), carry


def rnn_apply_last(params, xs, carry, mask=None, hoist=None):
    """Readout on the last step only (sequence classification): xs [T, B, D] -> y [B, O].
    With a mask, "last" is the state after each sequence's last real step (held state)."""
    _, carry = rnn_features(params, xs, carry, mask, hoist)
    return dense_apply(params["readout"], carry[-1][0]), carry
