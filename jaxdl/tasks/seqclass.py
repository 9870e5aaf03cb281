"""Sequence classification (the seed's second sequence problem).

variant=digits : scikit-learn's 8x8 digits, each image read row by row as 8 time
                 steps of 8 features (no download).
variant=mnist  : MNIST from IDX files, 28 steps of 28 features.
variant=varlen : variable-length sequences (lengths min_len..max_len) of values in
                 [0, 1], label = whether the sequence's mean exceeds 0.5; padded with
                 pad_sequences and masked, so padded steps do not change the result.
Reports test/accuracy.
"""
from __future__ import annotations

import jax
import numpy as np

from jaxdl.data.encoding import one_hot
from jaxdl.data.images import digits, mnist
from jaxdl.data.padding import pad_sequences
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


def run(variant="digits", n=4000, min_len=5, max_len=30, padding="post", limit=0, hidden=64, epochs=30,
        batch_size=32, lr=5e-3, seed=0, verbose=0, data_dir="", checkpoint_dir=None, checkpoint_every=1,
        resume=False):
    X_tr, y_tr, X_te, y_te, m_tr, m_te = load(variant, seed, data_dir, limit, n, min_len, max_len, padding)
    classes = int(max(y_tr.max(), y_te.max())) + 1
    c = Sequential([LSTM(hidden), Dense(classes, "softmax")], input_shape=X_tr.shape[1:]).compile(
        "adam", "categorical_crossentropy", ["accuracy"], lr=lr)
    ts = c.init(jax.random.PRNGKey(seed))
    ts, hist = c.fit(ts, X_tr, one_hot(y_tr, classes, np.float32), batch_size=batch_size, epochs=epochs,
                     mask=m_tr, verbose=verbose, seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                     validation_data=None, resume=resume)
    ev = c.evaluate(ts, X_te, one_hot(y_te, classes, np.float32), batch_size=batch_size, mask=m_te)
    acc = float((c.predict_classes(ts, X_te, batch_size, m_te) == y_te).mean())
    majority = float(np.bincount(y_te).max() / len(y_te))
    return {"test/accuracy": acc, "test/loss": ev["loss"], "test/majority_baseline": majority}, hist, (c, ts)
