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

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from jaxdl.config.fields import setting
from jaxdl.data.batch import Batch
from jaxdl.data.prepared import SeqTask
from jaxdl.tasks.registry import Task


def _stream_batch(x, y, weight):
    """[T, B, ...] arrays -> a Batch with one leading batch axis."""
    mask = np.ones(weight.shape, np.float32)
    return Batch(x[None], y[None], mask[None], weight.astype(np.float32)[None])


@dataclass(frozen=True)
class EchoConfig:
    name: str = "echo"
    lag: int = setting(8, ge=1, doc="steps between a symbol and its echo")
    vocab: int = setting(4, ge=2)
    length: int = setting(2000, ge=1, doc="steps per stream per epoch")
    streams: int = setting(32, ge=1, doc="parallel streams (the batch)")
    test_length: int = setting(2000, ge=1)
    val_length: int = setting(1000, ge=0, doc="0: no val split")

    def data_bytes(self) -> int:
        """The arrays echo builds (one-hot x, y, mask, weight; twice: built, then on the
        device), for the size check before they exist."""
        return 2 * self.streams * (self.length + self.test_length + self.val_length) * (4 * self.vocab + 12)


def echo(cfg: EchoConfig, seed: int) -> SeqTask:
    """One-hot symbols x [T, B, V]; integer targets y [T, B]; steps t < lag carry no loss.
    Train, test and val streams are drawn in that order from one generator (val_length=0:
    no val split)."""
    lag, vocab, streams = cfg.lag, cfg.vocab, cfg.streams
    rng = np.random.default_rng(seed)

    def make(T):
        s = rng.integers(0, vocab, size=(T, streams))
        x = np.eye(vocab, dtype=np.float32)[s]
        y = np.zeros_like(s)
        y[lag:] = s[:-lag] if lag > 0 else s
        w = np.ones((T, streams), np.float32)
        w[:lag] = 0.0
        return _stream_batch(x, y.astype(np.int32), w)

    train, test = make(cfg.length), make(cfg.test_length)
    return SeqTask("echo", train, test, vocab, vocab, "xent",
                   "test/accuracy", 1.0 / vocab, f"chance = 1/vocab = {1.0 / vocab:.3f}",
                   val=make(cfg.val_length) if cfg.val_length else None)


@dataclass(frozen=True)
class AddingConfig:
    REQUIRED_RESET: ClassVar[str] = "batch"     # independent sequences: the state resets every batch
    name: str = "adding"
    length: int = setting(50, ge=1, doc="steps per sequence")
    train_size: int = setting(4096, ge=1)
    test_size: int = setting(1024, ge=1)
    batch: int = setting(64, ge=1, doc="sequences per batch (the streams)")
    val_size: int = setting(512, ge=0, doc="0: no val split")

    def data_bytes(self) -> int:
        """x (2 values), y, mask, weight per step of every sequence, twice (built, on the device)."""
        return 2 * (self.train_size + self.test_size + self.val_size) * self.length * 20


def adding(cfg: AddingConfig, seed: int) -> SeqTask:
    """x [N, T, B, 2] (value, marker), y [N, T, B, 1]; loss weight only on the last step."""
    length, batch = cfg.length, cfg.batch
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

    train, test = make(cfg.train_size), make(cfg.test_size)
    return SeqTask("adding", train, test, 2, 1, "mse", "test/mse",
                   1.0 / 6.0, "always predicting 1.0 gives MSE 0.167", higher_is_better=False,
                   reset=cfg.REQUIRED_RESET, val=make(cfg.val_size) if cfg.val_size else None)


@dataclass(frozen=True)
class SineConfig:
    name: str = "sine"
    length: int = setting(2000, ge=1)
    streams: int = setting(16, ge=1)
    noise: float = setting(0.05, ge=0)
    test_length: int = setting(1000, ge=1)
    val_length: int = setting(1000, ge=0, doc="0: no val split")

    def data_bytes(self) -> int:
        """x, y, mask, weight per step of every stream, twice (built, on the device)."""
        return 2 * self.streams * (self.length + self.test_length + self.val_length) * 16


def sine(cfg: SineConfig, seed: int) -> SeqTask:
    """x [T, B, 1] noisy sinusoid, y [T, B, 1] the next value."""
    streams, noise = cfg.streams, cfg.noise
    rng = np.random.default_rng(seed)

    def make(T):
        t = np.arange(T + 1)[:, None]
        period = rng.uniform(15, 40, (1, streams))
        phase = rng.uniform(0, 2 * np.pi, (1, streams))
        s = (np.sin(2 * np.pi * t / period + phase) + noise * rng.standard_normal((T + 1, streams)))
        s = s.astype(np.float32)[..., None]
        return _stream_batch(s[:-1], s[1:], np.ones((T, streams), np.float32))

    train, test = make(cfg.length), make(cfg.test_length)
    val = make(cfg.val_length) if cfg.val_length else None
    persist = float(((test.x[0] - test.y[0]) ** 2).mean())
    return SeqTask("sine", train, test, 1, 1, "mse", "test/mse", persist,
                   f"persistence (predict the last value) gives MSE {persist:.4f}",
                   higher_is_better=False, val=val)


TASKS = (Task("echo", echo, EchoConfig, "stream"),
         Task("adding", adding, AddingConfig, "stream"),
         Task("sine", sine, SineConfig, "stream"))
