"""Scaling as fit -> parameters -> transform / inverse_transform (the source text's
"How to Prepare Data for LSTM"): min-max normalisation and standardisation.
Columns are features: x [N, F] (a 1-D series is treated as one column)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class MinMax(NamedTuple):
    data_min: np.ndarray   # [F]
    data_max: np.ndarray   # [F]
    lo: float
    hi: float


class Standard(NamedTuple):
    mean: np.ndarray       # [F]
    scale: np.ndarray      # [F], the population standard deviation (ddof=0), as scikit-learn


def _as_2d(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected [samples, features] or a 1-D series, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{what}: the data is empty; fit on at least one sample")
    if not np.isfinite(a).all():
        bad_rows = sorted(set(np.nonzero(~np.isfinite(a))[0].tolist()))[:5]
        raise ValueError(f"{what}: the data holds NaN or inf at rows {bad_rows}; "
                         "drop or fill them first")
    return a


def minmax_fit(x, feature_range=(0.0, 1.0)) -> MinMax:
    lo, hi = feature_range
    if not hi > lo:
        raise ValueError(f"feature_range must be (low, high) with high > low, got {feature_range}")
    a = _as_2d(x, "minmax_fit")
    return MinMax(a.min(0), a.max(0), float(lo), float(hi))


def minmax_transform(p: MinMax, x):
    a = _as_2d(x, "minmax_transform")
    rng = np.where(p.data_max > p.data_min, p.data_max - p.data_min, 1.0)   # constant column -> lo
    return (a - p.data_min) / rng * (p.hi - p.lo) + p.lo


def minmax_inverse(p: MinMax, y):
    a = _as_2d(y, "minmax_inverse")
    rng = np.where(p.data_max > p.data_min, p.data_max - p.data_min, 1.0)
    return (a - p.lo) / (p.hi - p.lo) * rng + p.data_min


def standard_fit(x) -> Standard:
    a = _as_2d(x, "standard_fit")
    return Standard(a.mean(0), a.std(0))


def standard_transform(p: Standard, x):
    a = _as_2d(x, "standard_transform")
    return (a - p.mean) / np.where(p.scale > 0, p.scale, 1.0)


def standard_inverse(p: Standard, y):
    a = _as_2d(y, "standard_inverse")
    return a * np.where(p.scale > 0, p.scale, 1.0) + p.mean
