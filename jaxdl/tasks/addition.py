"""Sequence to sequence (the source text's fourth problem): an encoder-decoder LSTM that
reads "12+345" and writes "357", as in Brownlee's book and Flax's seq2seq example.

Characters are one-hot encoded; inputs are padded on the left with spaces to a
fixed length and answers on the right. Encoder LSTM -> RepeatVector -> decoder
LSTM (return_sequences) -> Dense softmax on every output step. Reports
exact_match (every character right) on held-out val and test problems.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.config.fields import setting
from jaxdl.config.schema import OptimConfig, RecurrentConfig, TrainConfig
from jaxdl.data.encoding import one_hot
from jaxdl.data.prepared import WorkflowTask
from jaxdl.tasks.recipe import optimizer, recurrent_layers
from jaxdl.workflow import Dense, RepeatVector, Sequential
from jaxdl.workflow.model import TrainState
from jaxdl.tasks.registry import Task

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


@dataclass(frozen=True)
class AdditionConfig:
    name: str = "addition"
    digits: int = setting(3, ge=1, doc="digits per operand")
    train_size: int = setting(20000, ge=1)
    test_size: int = setting(2000, ge=1)
    val_size: int = setting(1000, ge=0, doc="0: no val split")


def addition(cfg: AdditionConfig, seed: int, model: RecurrentConfig, optim: OptimConfig,
             train: TrainConfig) -> WorkflowTask:
    """Encoder-decoder of model.name layers (model.hidden units, model.layers deep on each
    side) on train_size problems, trained with optim.*; val_size and test_size problems none
    of which is in the training set. Scores exact_match (every character right) and
    char_accuracy; after training prints held-out examples of replica 0."""
    digits = cfg.digits
    rng = np.random.default_rng(seed)
    problems = make_problems(cfg.train_size, digits, rng)
    test = make_problems(cfg.test_size, digits, rng, exclude=frozenset(q for q, _ in problems))
    val = (make_problems(cfg.val_size, digits, rng, exclude=frozenset(q for q, _ in problems + test))
           if cfg.val_size else [])
    X_tr, Y_tr, _ = encode(problems, digits)
    c = Sequential([*recurrent_layers(model), RepeatVector(digits + 1), *recurrent_layers(model, True),
                    Dense(len(ALPHABET), "softmax")], input_shape=X_tr.shape[1:]).compile(
        optimizer(optim), "categorical_crossentropy", ["accuracy"])

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

    return WorkflowTask("addition", c, (X_tr, Y_tr, None), splits, score, train.batch_size, "test/exact_match",
                        1.0 / 10 ** (digits + 1), "a random guess of the answer's digits", after=after)


def examples(c, ts, problems, digits) -> list[str]:
    """'q = predicted answer' for each problem."""
    X, _, _ = encode(problems, digits)
    return [f"{q} = {p}" for (q, _), p in zip(problems, decode(c.predict_classes(ts, X)))]


TASKS = (Task("addition", addition, AdditionConfig, "workflow", ("model", "optim", "train")),)
