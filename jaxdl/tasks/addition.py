"""Sequence to sequence (the seed's fourth problem): an encoder-decoder LSTM that
reads "12+345" and writes "357", as in Brownlee's book and Flax's seq2seq example.

Characters are one-hot encoded; inputs are padded on the left with spaces to a
fixed length and answers on the right. Encoder LSTM -> RepeatVector -> decoder
LSTM (return_sequences) -> Dense softmax on every output step. Reports
test/exact_match (every character right) on held-out problems.
"""
from __future__ import annotations

import jax
import numpy as np

from jaxdl.data.encoding import one_hot
from jaxdl.workflow import LSTM, Dense, RepeatVector, Sequential

ALPHABET = "0123456789+ "
CHAR = {c: i for i, c in enumerate(ALPHABET)}


def make_problems(n, digits, rng, exclude=frozenset()):
    """n distinct problems 'a+b' -> 'a+b' as strings, none in `exclude`."""
    hi = 10 ** digits
    out, seen = [], set(exclude)
    while len(out) < n:
        a, b = (int(v) for v in rng.integers(0, hi, 2))
        q = f"{a}+{b}"
        if q in seen:
            continue
        seen.add(q)
        out.append((q, str(a + b)))
    return out


def encode(problems, digits):
    in_len, out_len = 2 * digits + 1, digits + 1
    X = np.array([[CHAR[c] for c in q.rjust(in_len)] for q, _ in problems])
    Y = np.array([[CHAR[c] for c in a.ljust(out_len)] for _, a in problems])
    return one_hot(X, len(ALPHABET), np.float32), one_hot(Y, len(ALPHABET), np.float32), Y


def decode(ids) -> list[str]:
    return ["".join(ALPHABET[i] for i in row).strip() for row in np.asarray(ids)]


def run(digits=3, train_size=20000, test_size=2000, hidden=128, epochs=40, batch_size=64, lr=3e-3,
        seed=0, verbose=0, checkpoint_dir=None, checkpoint_every=1, resume=False):
    rng = np.random.default_rng(seed)
    train = make_problems(train_size, digits, rng)
    test = make_problems(test_size, digits, rng, exclude=frozenset(q for q, _ in train))
    X_tr, Y_tr, _ = encode(train, digits)
    X_te, Y_te, ids_te = encode(test, digits)
    c = Sequential([LSTM(hidden), RepeatVector(digits + 1), LSTM(hidden, return_sequences=True),
                    Dense(len(ALPHABET), "softmax")], input_shape=X_tr.shape[1:]).compile(
        "adam", "categorical_crossentropy", ["accuracy"], lr=lr, clip=1.0)
    ts = c.init(jax.random.PRNGKey(seed))
    ts, hist = c.fit(ts, X_tr, Y_tr, batch_size=batch_size, epochs=epochs, verbose=verbose, seed=seed,
                     checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume)
    pred = c.predict_classes(ts, X_te, batch_size)
    exact = float((pred == ids_te).all(1).mean())
    examples = [f"{q} = {p}" for (q, _), p in zip(test[:8], decode(pred[:8]))]
    return ({"test/exact_match": exact, "test/char_accuracy": float((pred == ids_te).mean())}, hist,
            examples)
