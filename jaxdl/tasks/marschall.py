"""The "add" task of Marschall, Cho & Savin 2020 (JMLR 21, "A unified framework of online
learning algorithms for training recurrent neural networks", after Pitis 2016).

x(t) ~ Bernoulli(1/2) i.i.d.; the target is a probability,

    y(t) = 0.5 + 0.5 x(t - t1) - 0.25 x(t - t2)

scored by the cross-entropy of a sigmoid output against y(t) (the paper's 2-way softmax
against (y, 1 - y) is the same loss). Three reference levels of the mean loss (nats):
    no memory      predict E[y] = 0.625 always:        H(y, 0.625), 0.662 for t1 < t2
    t1 learned     predict E[y | x(t - t1)]:           0.519
    both learned   predict y(t) itself:                E[H(y)], 0.454 (the floor)
A learner that finds the t1 dependency (short) before the t2 one (long) steps down from
the first level to the second and then to the third. The lags t1 = 5, t2 = 9 are this
module's defaults (Marschall et al. vary them; pick the paper's values by argument).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxdl.config.fields import setting
from jaxdl.data.batch import Batch
from jaxdl.data.prepared import SeqTask
from jaxdl.tasks.registry import Task


def _xent(p_true, p_pred):
    """Mean binary cross-entropy H(y, q) in nats."""
    q = np.clip(p_pred, 1e-12, 1 - 1e-12)
    return float(np.mean(-(p_true * np.log(q) + (1 - p_true) * np.log(1 - q))))


def add_levels(t1: int, t2: int) -> dict:
    """The three reference losses of the task (exact expectations over the 4 input pairs)."""
    a, b = np.meshgrid([0.0, 1.0], [0.0, 1.0], indexing="ij")      # x(t - t1), x(t - t2)
    y = 0.5 + 0.5 * a - 0.25 * b
    given_t1 = 0.5 + 0.5 * a - 0.125                                # E[y | x(t - t1)]
    return {"no_memory": _xent(y, np.full_like(y, y.mean())), "t1_learned": _xent(y, given_t1),
            "both_learned": _xent(y, y)}


@dataclass(frozen=True)
class MarschallAddConfig:
    name: str = "marschall_add"
    t1: int = setting(5, ge=1, doc="the near lag: y(t) reads x(t - t1)")
    t2: int = setting(9, ge=2, doc="the far lag (t2 > t1)")
    length: int = setting(2000, ge=1, doc="steps per stream per epoch")
    streams: int = setting(32, ge=1, doc="parallel streams (the batch)")
    test_length: int = setting(2000, ge=1)
    val_length: int = setting(1000, ge=0, doc="0: no val split")


def add(cfg: MarschallAddConfig, seed: int) -> SeqTask:
    """x [T, B, 1] bits, y [T, B, 1] target probabilities; steps t < t2 carry no loss.
    Train, test and val streams are drawn in that order from one generator."""
    t1, t2, streams = cfg.t1, cfg.t2, cfg.streams
    if not 0 < t1 < t2:
        raise ValueError(f"task.t1={t1}, task.t2={t2}: the add task needs 0 < t1 < t2; set task.t2 above task.t1")
    rng = np.random.default_rng(seed)
    lead = t2

    def make(T):
        x = rng.integers(0, 2, size=(T + lead, streams)).astype(np.float32)
        y = 0.5 + 0.5 * x[lead - t1:T + lead - t1] - 0.25 * x[lead - t2:T + lead - t2]
        x = x[lead:]
        w = np.ones((T, streams), np.float32)
        w[:lead] = 0.0                              # the first steps' targets read inputs before the stream
        mask = np.ones((T, streams), np.float32)
        return Batch(x[None, :, :, None], y.astype(np.float32)[None, :, :, None], mask[None], w[None])

    train, test = make(cfg.length), make(cfg.test_length)
    lv = add_levels(t1, t2)
    return SeqTask("marschall_add", train, test, 1, 1, "binary_xent", "test/loss", lv["no_memory"],
                   f"no memory: loss {lv['no_memory']:.3f} nats; t1 learned: {lv['t1_learned']:.3f}; "
                   f"both learned: {lv['both_learned']:.3f}", higher_is_better=False,
                   val=make(cfg.val_length) if cfg.val_length else None)


TASKS = (Task("marschall_add", add, MarschallAddConfig, "stream"),)
