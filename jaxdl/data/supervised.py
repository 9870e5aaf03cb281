"""Sequence prediction as supervised learning: shift (pandas' shift, NaN-filled),
lagged pairs (t-n .. t-1 -> t .. t+m-1) with incomplete rows dropped, and the
reshape to [samples, time steps, features] an LSTM takes."""
from __future__ import annotations

import numpy as np


def shift(series, n: int) -> np.ndarray:
    """Like pandas Series.shift(n): n > 0 pushes values down (NaN at the top), n < 0 pulls up."""
    a = np.asarray(series, dtype=np.float64)
    out = np.full_like(a, np.nan)
    if n > 0:
        out[n:] = a[:-n]
    elif n < 0:
        out[:n] = a[-n:]
    else:
        out[:] = a
    return out


def series_to_supervised(data, n_in: int = 1, n_out: int = 1, dropnan: bool = True):
    """data [T] or [T, F] -> (X [rows, n_in, F], y [rows, n_out, F]): inputs t-n_in .. t-1,
    outputs t .. t+n_out-1. With dropnan, rows with a missing value are dropped."""
    a = np.asarray(data, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"series_to_supervised: expected a non-empty [T] or [T, F] series, got shape {a.shape}")
    if n_in < 0 or n_out < 1:
        raise ValueError(f"series_to_supervised: n_in must be >= 0 and n_out >= 1, got {n_in}, {n_out}")
    if not np.isfinite(a).all():
        raise ValueError("series_to_supervised: the series holds NaN or inf; fill or drop them first")
    T = len(a)
    cols_x = [np.stack([shift(a[:, f], k) for f in range(a.shape[1])], -1) for k in range(n_in, 0, -1)]
    cols_y = [np.stack([shift(a[:, f], -k) for f in range(a.shape[1])], -1) for k in range(n_out)]
    X = np.stack(cols_x, 1) if cols_x else np.zeros((T, 0, a.shape[1]))
    y = np.stack(cols_y, 1)
    if dropnan:
        keep = ~(np.isnan(X).any((1, 2)) | np.isnan(y).any((1, 2)))
        X, y = X[keep], y[keep]
        if len(X) == 0:
            raise ValueError(f"series_to_supervised: a series of {T} steps is too short for n_in={n_in}, n_out={n_out}")
    return X, y


def to_samples_steps_features(data, steps: int | None = None, features: int | None = None) -> np.ndarray:
    """Reshape 1-D or 2-D data to the 3-D [samples, time steps, features] an LSTM takes.
    A 1-D series of T values becomes [1, T, 1]; a [T, F] table becomes [1, T, F];
    with `steps`, the rows are cut into samples of that many steps."""
    a = np.asarray(data)
    if a.size == 0:
        raise ValueError("to_samples_steps_features: the data is empty")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim == 3:
        return a
    if a.ndim != 2:
        raise ValueError(f"to_samples_steps_features: expected 1-D, 2-D or 3-D data, got shape {a.shape}")
    if features is not None and a.shape[1] != features:
        raise ValueError(f"the data has {a.shape[1]} features per step, not {features}")
    steps = steps or a.shape[0]
    if a.shape[0] % steps:
        raise ValueError(f"{a.shape[0]} rows do not split into samples of {steps} steps; "
                         "pad or truncate the series first")
    return a.reshape(a.shape[0] // steps, steps, a.shape[1])
