"""Optimizers by name, built from optax (the source text's SGD, plus Adam, AdamW and RMSprop),
with optional global-norm gradient clipping.

`injectable=True` wraps the optimizer in optax.inject_hyperparams, so the learning
rate, clip norm and weight decay live in the optimizer STATE: members of a population
(jaxdl.train.population) each carry their own values through one vmapped program."""
from __future__ import annotations

import math

import optax

NAMES = ("sgd", "adam", "rmsprop", "adamw")


def _base(name: str, lr, weight_decay, momentum: float = 0.0) -> optax.GradientTransformation:
    if name == "sgd":
        return optax.sgd(lr, momentum=momentum or None)
    if name == "adam":
        return optax.adam(lr)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return optax.rmsprop(lr)
    raise ValueError(f"unknown optimizer {name!r}; use one of {NAMES}")


def make_optimizer(name: str, lr, clip=0.0, momentum: float = 0.0, weight_decay=0.0,
                   injectable: bool = False) -> optax.GradientTransformation:
    """clip > 0: clip the gradients' global norm first (0 disables clipping)."""
    if name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r}; use one of {NAMES}")
    if injectable:
        # max_norm = inf leaves gradients as they are (clip_by_global_norm selects them unchanged)
        build = lambda learning_rate, max_norm, weight_decay: optax.chain(
            optax.clip_by_global_norm(max_norm), _base(name, learning_rate, weight_decay, momentum))
        return optax.inject_hyperparams(build)(learning_rate=lr, max_norm=clip, weight_decay=weight_decay)
    if lr <= 0:
        raise ValueError(f"optim.lr must be > 0, got {lr}")
    opt = _base(name, lr, weight_decay, momentum)
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt


def injectable_clip(clip: float) -> float:
    """The max_norm an injectable optimizer takes for a clip setting (0 = no clipping)."""
    return clip if clip > 0 else math.inf


def optimizers(optim, injectable: bool = False):
    """optim: an OptimConfig (jaxdl.config.schema: name, lr, clip, momentum, weight_decay)
    -> (the optimizer a trainer updates with, member(hp) -> the optimizer whose init holds a
    population member's values hp {"optim.lr", "optim.clip", "optim.weight_decay"}, falling
    back to the run's values). Without `injectable`, member(hp) is the plain optimizer."""
    if not injectable:
        opt = make_optimizer(optim.name, optim.lr, optim.clip, optim.momentum, optim.weight_decay)
        return opt, lambda hp: opt

    def member(hp):
        return make_optimizer(optim.name, hp.get("optim.lr", optim.lr),
                              hp.get("optim.clip", injectable_clip(optim.clip)), optim.momentum,
                              hp.get("optim.weight_decay", optim.weight_decay), injectable=True)
    return member({}), member
