"""Sequence classification (the source text's second sequence problem).

variant=digits : scikit-learn's 8x8 digits, each image read row by row as 8 time
                 steps of 8 features (no download).
variant=mnist  : MNIST from IDX files, 28 steps of 28 features.
variant=varlen : variable-length sequences (lengths min_len..max_len) of values in
                 [0, 1], label = whether the sequence's mean exceeds 0.5; padded with
                 pad_sequences and masked, so padded steps do not change the result.
Reports accuracy on val (held out from training) and test.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxdl.config.fields import setting
from jaxdl.config.schema import OptimConfig, RecurrentConfig, TrainConfig

from jaxdl.data.encoding import one_hot
from jaxdl.data.images import digits, mnist
from jaxdl.data.padding import pad_sequences
from jaxdl.data.prepared import WorkflowTask
from jaxdl.tasks.recipe import optimizer, recurrent_layers
from jaxdl.workflow import Dense, Sequential
from jaxdl.tasks.registry import Task


@dataclass(frozen=True)
class SeqclassConfig:
    name: str = "seqclass"
    variant: str = setting("digits", choices=("digits", "mnist", "varlen"))
    n: int = setting(4000, ge=1, doc="varlen: sequences")
    min_len: int = setting(5, ge=1)
    max_len: int = setting(30, ge=1)
    padding: str = setting("post", choices=("pre", "post"))
    val_fraction: float = setting(0.1, ge=0, lt=1, doc="the last training sequences")
    limit: int = setting(0, ge=0, doc="mnist: >0 uses only the first `limit` images")


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


def seqclass(cfg: SeqclassConfig, seed: int, model: RecurrentConfig, optim: OptimConfig, train: TrainConfig,
             data_dir: str = "") -> WorkflowTask:
    """model.layers recurrent layers (model.name, model.hidden units) -> Dense(classes,
    softmax) read over the rows/steps, trained with optim.*; the last `val_fraction` of the
    training sequences are the validation split. Scores loss and accuracy; chance is the
    majority class of the test split."""
    X_tr, y_tr, X_te, y_te, m_tr, m_te = load(cfg.variant, seed, data_dir, cfg.limit, cfg.n, cfg.min_len,
                                              cfg.max_len, cfg.padding)
    classes = int(max(y_tr.max(), y_te.max())) + 1
    k = len(X_tr) - int(round(len(X_tr) * cfg.val_fraction))
    c = Sequential([*recurrent_layers(model), Dense(classes, "softmax")], input_shape=X_tr.shape[1:]).compile(
        optimizer(optim), "categorical_crossentropy", ["accuracy"])
    hot = lambda y: one_hot(y, classes, np.float32)
    cut = lambda m, sl: None if m is None else m[sl]
    splits = {"val": (X_tr[k:], hot(y_tr[k:]), cut(m_tr, slice(k, None)), None),
              "test": (X_te, hot(y_te), m_te, None)}
    if k == len(X_tr):
        splits.pop("val")
    majority = float(np.bincount(y_te).max() / len(y_te))
    return WorkflowTask("seqclass", c, (X_tr[:k], hot(y_tr[:k]), cut(m_tr, slice(None, k))), splits, c.score,
                        train.batch_size, "test/accuracy", majority,
                        f"always the majority class gives accuracy {majority:.3f}",
                        after=lambda state, run_dir: {"final": {"test/majority_baseline": majority}})


TASKS = (Task("seqclass", seqclass, SeqclassConfig, "workflow", ("model", "optim", "train", "data_dir")),)
