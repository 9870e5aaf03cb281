"""Categorical data: integer encoding (labels -> 0..K-1, sorted as scikit-learn's
LabelEncoder) and one-hot encoding, each with its inverse."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Labels(NamedTuple):
    classes: np.ndarray     # sorted distinct labels


def integer_fit(values) -> Labels:
    v = np.asarray(values)
    if v.size == 0:
        raise ValueError("integer_fit: no labels given; fit on at least one label")
    if v.dtype.kind == "f" and np.isnan(v).any():
        raise ValueError("integer_fit: labels hold NaN; drop or fill them first")
    return Labels(np.unique(v))


def integer_encode(p: Labels, values) -> np.ndarray:
    v = np.asarray(values)
    idx = np.searchsorted(p.classes, v)
    bad = (idx >= len(p.classes)) | (p.classes[np.minimum(idx, len(p.classes) - 1)] != v)
    if bad.any():
        unseen = sorted(set(np.asarray(v)[bad].tolist()))[:5]
        raise ValueError(f"integer_encode: unseen labels {unseen}; known labels are {p.classes.tolist()} "
                         "(fit on data that holds every label)")
    return idx.astype(np.int64)


def integer_decode(p: Labels, ints) -> np.ndarray:
    i = np.asarray(ints)
    if i.size and (i.min() < 0 or i.max() >= len(p.classes)):
        raise ValueError(f"integer_decode: codes must lie in 0..{len(p.classes) - 1}, got {i.min()}..{i.max()}")
    return p.classes[i]


def one_hot(ints, num_classes: int | None = None, dtype=np.float64) -> np.ndarray:
    """ints [...] -> [..., K]."""
    i = np.asarray(ints)
    if i.size == 0:
        raise ValueError("one_hot: no values given")
    if not np.issubdtype(i.dtype, np.integer):
        raise ValueError(f"one_hot: expects integer codes (use integer_encode first), got dtype {i.dtype}")
    k = int(i.max()) + 1 if num_classes is None else num_classes
    if i.min() < 0 or i.max() >= k:
        raise ValueError(f"one_hot: codes must lie in 0..{k - 1}, got {i.min()}..{i.max()}")
    return np.eye(k, dtype=dtype)[i]


def one_hot_decode(vectors) -> np.ndarray:
    """The inverse of one_hot (also of predicted probabilities): argmax over the last axis."""
    return np.argmax(np.asarray(vectors), axis=-1)
