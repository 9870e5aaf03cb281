"""Sequence classification (the seed's second sequence problem).

variant=digits : scikit-learn's 8x8 digits, each image read row by row as 8 time
                 steps of 8 features (no download).
variant=mnist  : MNIST from IDX files, 28 steps of 28 features.
variant=varlen : variable-length sequences (lengths min_len..max_len) of values in
                 [0, 1], label = whether the sequence's mean exceeds 0.5; padded with
                 pad_sequences and masked, so padded steps do not change the result.
Reports accuracy on val (held out from training) and test.
"""
from __future__ import annotations

import numpy as np

from jaxdl.data.encoding import one_hot
from jaxdl.data.images import digits, mnist
from jaxdl.data.padding import pad_sequences
from jaxdl.tasks.base import WorkflowTask
from jaxdl.workflow import LSTM, Dense, Sequential


def load(variant, seed, data_dir="", limit=0, n=4000, min_len=5, max_len=30, padding="post"):
    """-> (X_tr, y_tr, X_te, y_te, mask_tr, mask_te), X [N, steps, features]."""
    if variant == "digits":
        x_tr, y_tr, x_te, y_te = digits(0.25, seed)
        return x_tr.reshape(-1, 8, 8), y_tr, x_te.reshape(-1, 8, 8), y_te, None, None
    if variant == "mnist":
        x_tr, y_tr, x_te, y_te = mnist("idx", None, data_dir, limit)
        return x_tr.reshape(-1, 28, 28), y_tr, x_te.reshape(-1, 28, 28), y_te, None, None
    if variant == "varlen":
        rng = np.random.default_rng(seed)
        lens = rng.integers(min_len, max_len + 1, n)
        seqs = [rng.random((L, 1)).astype(np.float32) for L in lens]
        y = np.array([s.mean() > 0.5 for s in seqs], np.int64)
        X, m = pad_sequences(seqs, maxlen=max_len, padding=padding, value=0.0, return_mask=True, dtype=np.float32)
        k = int(0.8 * n)
        return X[:k], y[:k], X[k:], y[k:], m[:k], m[k:]
    raise ValueError(f"task.variant must be digits, mnist or varlen, got {variant!r}")


def seqclass(variant="digits", n=4000, min_len=5, max_len=30, padding="post", limit=0, val_fraction=0.1,
             hidden=64, batch_size=32, lr=5e-3, seed=0, data_dir="") -> WorkflowTask:
    """LSTM(hidden) -> Dense(classes, softmax) read over the rows/steps; the last
    `val_fraction` of the training sequences are the validation split. Scores loss and
    accuracy; chance is the majority class of the test split."""
    X_tr, y_tr, X_te, y_te, m_tr, m_te = load(variant, seed, data_dir, limit, n, min_len, max_len, padding)
    classes = int(max(y_tr.max(), y_te.max())) + 1
    k = len(X_tr) - int(round(len(X_tr) * val_fraction))
    c = Sequential([LSTM(hidden), Dense(classes, "softmax")], input_shape=X_tr.shape[1:]).compile(
        "adam", "categorical_crossentropy", ["accuracy"], lr=lr)
    hot = lambda y: one_hot(y, classes, np.float32)
    cut = lambda m, sl: None if m is None else m[sl]
    splits = {"val": (X_tr[k:], hot(y_tr[k:]), cut(m_tr, slice(k, None)), None),
              "test": (X_te, hot(y_te), m_te, None)}
    if k == len(X_tr):
        splits.pop("val")
    majority = float(np.bincount(y_te).max() / len(y_te))
    return WorkflowTask("seqclass", c, (X_tr[:k], hot(y_tr[:k]), cut(m_tr, slice(None, k))), splits, c.score,
                        batch_size, "test/accuracy", majority,
                        f"always the majority class gives accuracy {majority:.3f}",
                        after=lambda state, run_dir: {"final": {"test/majority_baseline": majority}})
