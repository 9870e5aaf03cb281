"""Sequence to sequence (the seed's fourth problem): an encoder-decoder LSTM that
reads "12+345" and writes "357", as in Brownlee's book and Flax's seq2seq example.

Characters are one-hot encoded; inputs are padded on the left with spaces to a
fixed length and answers on the right. Encoder LSTM -> RepeatVector -> decoder
LSTM (return_sequences) -> Dense softmax on every output step. Reports
exact_match (every character right) on held-out val and test problems.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.encoding import one_hot
from jaxdl.tasks.base import WorkflowTask
from jaxdl.workflow import LSTM, Dense, RepeatVector, Sequential
from jaxdl.workflow.model import TrainState

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


def addition(digits=3, train_size=20000, test_size=2000, val_size=1000, hidden=128, batch_size=64, lr=3e-3,
             seed=0) -> WorkflowTask:
    """Encoder-decoder LSTM on train_size problems; val_size and test_size problems none
    of which is in the training set. Scores exact_match (every character right) and
    char_accuracy; after training prints held-out examples of replica 0."""
    rng = np.random.default_rng(seed)
    train = make_problems(train_size, digits, rng)
    test = make_problems(test_size, digits, rng, exclude=frozenset(q for q, _ in train))
    val = make_problems(val_size, digits, rng, exclude=frozenset(q for q, _ in train + test)) if val_size else []
    X_tr, Y_tr, _ = encode(train, digits)
    c = Sequential([LSTM(hidden), RepeatVector(digits + 1), LSTM(hidden, return_sequences=True),
                    Dense(len(ALPHABET), "softmax")], input_shape=X_tr.shape[1:]).compile(
        "adam", "categorical_crossentropy", ["accuracy"], lr=lr, clip=1.0)

    def score(preds, target):
        y, ids = target
        hit = jnp.argmax(preds, -1) == ids
        return {**c.score(preds, (y, None)), "exact_match": hit.all(1).mean(), "char_accuracy": hit.mean()}

    splits = {}
    for name, probs in (("val", val), ("test", test)):
        if probs:
            X, Y, ids = encode(probs, digits)
            splits[name] = (X, Y, None, ids)

    def after(state, run_dir):
        ts = TrainState(*(jax.tree.map(lambda a: a[0], state[k]) for k in ("params", "opt_state", "state")))
        ex = examples(c, ts, test[:8], digits)
        print("[jaxdl] held-out examples: " + "; ".join(ex))
        return {"examples": ex}

    return WorkflowTask("addition", c, (X_tr, Y_tr, None), splits, score, batch_size, "test/exact_match",
                        1.0 / 10 ** (digits + 1), "a random guess of the answer's digits", after=after)


def examples(c, ts, problems, digits) -> list[str]:
    """'q = predicted answer' for each problem."""
    X, _, _ = encode(problems, digits)
    return [f"{q} = {p}" for (q, _), p in zip(problems, decode(c.predict_classes(ts, X)))]
