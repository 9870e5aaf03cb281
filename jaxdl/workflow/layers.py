"""Layers for Sequential: small frozen descriptions with pure init / apply.

  init(key, in_shape) -> (params, out_shape)    shapes exclude the batch axis
  initial_state(params, batch) -> state | None   (recurrent layers: the cell's zero carry,
                                                   (h, c) for LSTM, (h,) for GRU and SimpleRNN;
                                                   others: None)
  apply(params, x, state, mask) -> (y, state)    x batch-major [B, ...]
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from jaxdl.models.activations import get_activation as _activation
from jaxdl.models.cell import get_cell
from jaxdl.models.dense import dense_apply, dense_init


@dataclass(frozen=True)
class Recurrent:
    """A recurrent layer: one cell of jaxdl.models (the Cell interface, jaxdl.models.cell)
    over the time axis. Input [B, T, F]; output [B, units] (the last step's h) or,
    with return_sequences, [B, T, units]. stateful=True keeps the cell's carry between
    calls (Sequential and Compiled hold it in TrainState.state). Subclasses name their
    cell and pass its init options (`_options`)."""
    units: int
    return_sequences: bool = False
    stateful: bool = False
    cell: ClassVar[str] = ""

    def __post_init__(self):
        if not isinstance(self.units, numbers.Integral) or isinstance(self.units, bool) or self.units < 1:
            raise ValueError(f"{type(self).__name__}(units={self.units!r}): units must be an integer >= 1")

    def _options(self) -> dict:
        return {}

    def init(self, key, in_shape):
        name = type(self).__name__
        if len(in_shape) != 2:
            raise ValueError(f"{name} expects input of shape [time steps, features], got {in_shape}; "
                             "reshape the data to [samples, time steps, features]")
        T, F = in_shape
        p = get_cell(self.cell).init(key, F, self.units, jnp.float32, **self._options())
        return p, ((T, self.units) if self.return_sequences else (self.units,))

    def initial_state(self, params, batch):
        return get_cell(self.cell).carry(params, batch)

    def apply(self, params, x, state, mask=None):
        c = get_cell(self.cell)
        xs = jnp.swapaxes(x, 0, 1)                                 # [T, B, F]
        m = None if mask is None else jnp.swapaxes(mask, 0, 1)
        hs, carry = c.scan(params, xs, state, m)
        y = jnp.swapaxes(hs, 0, 1) if self.return_sequences else c.output(carry)
        return y, carry


@dataclass(frozen=True)
class LSTM(Recurrent):
    """LSTM(units, return_sequences=False, stateful=False, forget_bias=1.0): the LSTM
    cell (jaxdl.models.lstm); the carry is (h, c)."""
    forget_bias: float = 1.0
    cell: ClassVar[str] = "lstm"

    def _options(self) -> dict:
        return {"forget_bias": self.forget_bias}


@dataclass(frozen=True)
class GRU(Recurrent):
    """GRU(units, return_sequences=False, stateful=False, reset_after=True): the GRU
    cell (jaxdl.models.gru), the cuDNN / PyTorch form, which is Keras'
    reset_after=True (its default); the carry is (h,). reset_after=False (the reset
    gate applied before the recurrent product) is not implemented and refused."""
    reset_after: bool = True
    cell: ClassVar[str] = "gru"

    def __post_init__(self):
        super().__post_init__()
        if self.reset_after is not True:
            raise ValueError("GRU(reset_after=False) is not implemented: jaxdl's GRU is the cuDNN / "
                             "PyTorch form (reset gate on the recurrent product); use reset_after=True")


@dataclass(frozen=True)
class SimpleRNN(Recurrent):
    """SimpleRNN(units, activation="tanh", return_sequences=False, stateful=False): the
    Elman RNN h' = tanh(x Wx + h Wh + b) (jaxdl.models.elman); the carry is (h,).
    Only activation="tanh" is implemented; any other is refused."""
    activation: str = "tanh"
    cell: ClassVar[str] = "rnn"

    def __post_init__(self):
        super().__post_init__()
        if self.activation != "tanh":
            raise ValueError(f"SimpleRNN(activation={self.activation!r}) is not implemented: the Elman "
                             "cell is tanh; use activation='tanh'")


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
