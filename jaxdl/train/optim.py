"""Optimizers by name, built from optax (the seed's SGD, plus Adam and RMSprop),
with optional global-norm gradient clipping."""
from __future__ import annotations

import optax

NAMES = ("sgd", "adam", "rmsprop", "adamw")


def make_optimizer(name: str, lr: float, clip: float = 0.0, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
    if lr <= 0:
        raise ValueError(f"optim.lr must be > 0, got {lr}")
    if name == "sgd":
        opt = optax.sgd(lr, momentum=momentum or None)
    elif name == "adam":
        opt = optax.adam(lr)
    elif name == "adamw":
        opt = optax.adamw(lr, weight_decay=weight_decay)
    elif name == "rmsprop":
        opt = optax.rmsprop(lr)
    else:
        raise ValueError(f"unknown optimizer {name!r}; use one of {NAMES}")
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
