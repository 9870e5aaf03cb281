"""Embedded sequence tasks generated from a seed (no download).

echo   : a random symbol stream; the target at step t is the input at t - lag.
         Learnable only when gradients reach back `lag` steps (k2 > lag).
adding : Hochreiter & Schmidhuber (1997): T steps of (value, marker); the target
         at the last step is the sum of the two marked values. Predicting the mean
         (1.0) gives MSE 1/6 = 0.167.
sine   : next-value prediction of a noisy sinusoid stream (B streams with random
         phase and period).
"""
from __future__ import annotations

import numpy as np

from jaxdl.tasks.base import SeqTask
from jaxdl.train.tbptt import Batch


def _stream_batch(x, y, weight):
    """[T, B, ...] arrays -> a Batch with one leading batch axis."""
    mask = np.ones(weight.shape, np.float32)
    return Batch(x[None], y[None], mask[None], weight.astype(np.float32)[None])


def echo(seed: int, lag: int = 5, vocab: int = 4, length: int = 2000, streams: int = 32,
         test_length: int = 2000, val_length: int = 1000) -> SeqTask:
    """One-hot symbols x [T, B, V]; integer targets y [T, B]; steps t < lag carry no loss.
    Train, test and val streams are drawn in that order from one generator (val_length=0:
    no val split)."""
    rng = np.random.default_rng(seed)

    def make(T):
        s = rng.integers(0, vocab, size=(T, streams))
        x = np.eye(vocab, dtype=np.float32)[s]
        y = np.zeros_like(s)
        y[lag:] = s[:-lag] if lag > 0 else s
        w = np.ones((T, streams), np.float32)
        w[:lag] = 0.0
        return _stream_batch(x, y.astype(np.int32), w)

    train, test = make(length), make(test_length)
    return SeqTask("echo", train, test, vocab, vocab, "xent",
                   "test/accuracy", 1.0 / vocab, f"chance = 1/vocab = {1.0 / vocab:.3f}",
                   val=make(val_length) if val_length else None)


def adding(seed: int, length: int = 50, train_size: int = 4096, test_size: int = 1024,
           batch: int = 64, val_size: int = 512) -> SeqTask:
    """x [N, T, B, 2] (value, marker), y [N, T, B, 1]; loss weight only on the last step."""
    rng = np.random.default_rng(seed)

    def make(n):
        if n % batch:
            raise ValueError(f"adding: size {n} is not a multiple of the batch size {batch}")
        v = rng.random((n, length), dtype=np.float32)
        m = np.zeros((n, length), np.float32)
        half = max(length // 2, 1)
        a = rng.integers(0, half, n)
        b = rng.integers(half, length, n) if length > 1 else a
        b = np.where(b == a, (a + 1) % length, b)
        m[np.arange(n), a] = 1.0
        m[np.arange(n), b] = 1.0
        target = (v * m).sum(1)
        x = np.stack([v, m], -1)                                   # [n, T, 2]
        y = np.zeros((n, length, 1), np.float32)
        y[:, -1, 0] = target
        w = np.zeros((n, length), np.float32)
        w[:, -1] = 1.0
        # -> [N, T, B, ...]
        to_tm = lambda a: a.reshape(n // batch, batch, *a.shape[1:]).swapaxes(1, 2)
        return Batch(to_tm(x), to_tm(y), to_tm(np.ones_like(w)), to_tm(w))

    train, test = make(train_size), make(test_size)
    return SeqTask("adding", train, test, 2, 1, "mse", "test/mse",
                   1.0 / 6.0, "always predicting 1.0 gives MSE 0.167", higher_is_better=False,
                   reset="batch", val=make(val_size) if val_size else None)


def sine(seed: int, length: int = 2000, streams: int = 16, noise: float = 0.05,
         test_length: int = 1000, val_length: int = 1000) -> SeqTask:
    """x [T, B, 1] noisy sinusoid, y [T, B, 1] the next value."""
    rng = np.random.default_rng(seed)

    def make(T):
        t = np.arange(T + 1)[:, None]
        period = rng.uniform(15, 40, (1, streams))
        phase = rng.uniform(0, 2 * np.pi, (1, streams))
        s = (np.sin(2 * np.pi * t / period + phase) + noise * rng.standard_normal((T + 1, streams)))
        s = s.astype(np.float32)[..., None]
        return _stream_batch(s[:-1], s[1:], np.ones((T, streams), np.float32))

    train, test = make(length), make(test_length)
    val = make(val_length) if val_length else None
    persist = float(((test.x[0] - test.y[0]) ** 2).mean())
    return SeqTask("sine", train, test, 1, 1, "mse", "test/mse", persist,
                   f"persistence (predict the last value) gives MSE {persist:.4f}",
                   higher_is_better=False, val=val)
