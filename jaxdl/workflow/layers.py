"""Layers for Sequential: small frozen descriptions with pure init / apply.

  init(key, in_shape) -> (params, out_shape)    shapes exclude the batch axis
  initial_state(params, batch) -> state | None   (LSTM: zero (h, c); others: None)
  apply(params, x, state, mask) -> (y, state)    x batch-major [B, ...]
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from jaxdl.models.activations import get_activation as _activation
from jaxdl.models.dense import dense_apply, dense_init
from jaxdl.models.lstm import lstm_init, lstm_scan, zero_carry


@dataclass(frozen=True)
class LSTM:
    """LSTM(units): input [B, T, F]; output [B, units] (last step) or, with
    return_sequences, [B, T, units]. stateful=True keeps (h, c) between calls."""
    units: int
    return_sequences: bool = False
    stateful: bool = False
    forget_bias: float = 1.0

    def init(self, key, in_shape):
        if len(in_shape) != 2:
            raise ValueError(f"LSTM expects input of shape [time steps, features], got {in_shape}; "
                             "reshape the data to [samples, time steps, features]")
        T, F = in_shape
        p = lstm_init(key, F, self.units, self.forget_bias)
        return p, ((T, self.units) if self.return_sequences else (self.units,))

    def initial_state(self, params, batch):
        return zero_carry(batch, self.units)

    def apply(self, params, x, state, mask=None):
        xs = jnp.swapaxes(x, 0, 1)                                 # [T, B, F]
        m = None if mask is None else jnp.swapaxes(mask, 0, 1)
        hs, carry = lstm_scan(params, xs, state, m)
        y = jnp.swapaxes(hs, 0, 1) if self.return_sequences else carry[0]
        return y, carry


@dataclass(frozen=True)
class Dense:
    """Dense(units, activation) on the last axis (every time step of a sequence)."""
    units: int
    activation: str | None = None

    def init(self, key, in_shape):
        _activation(self.activation)
        return dense_init(key, in_shape[-1], self.units), (*in_shape[:-1], self.units)

    def initial_state(self, params, batch):
        return None

    def apply(self, params, x, state, mask=None):
        return _activation(self.activation)(dense_apply(params, x)), state


@dataclass(frozen=True)
class Activation:
    name: str

    def init(self, key, in_shape):
        _activation(self.name)
        return {}, in_shape

    def initial_state(self, params, batch):
        return None

    def apply(self, params, x, state, mask=None):
        return _activation(self.name)(x), state


@dataclass(frozen=True)
class RepeatVector:
    """[B, F] -> [B, n, F]: the encoder's summary fed to every decoder step."""
    n: int

    def init(self, key, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"RepeatVector expects [features], got {in_shape}")
        return {}, (self.n, in_shape[0])

    def initial_state(self, params, batch):
        return None

    def apply(self, params, x, state, mask=None):
        return jnp.repeat(x[:, None, :], self.n, axis=1), state
