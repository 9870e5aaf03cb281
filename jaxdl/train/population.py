"""Populations: a grid of non-shape hyperparameters trained as members of one
compiled program (vmap), beside the replicas (seeds).

population {"optim.lr": [1e-3, 3e-3], "model.forget_bias": [0, 1]} with replicas R gives
members = every combination x R, member i = (combination i // R, replica i % R).
Member (c, r) starts from the init key of replica r (fold_in(PRNGKey(seed), r)), so it
equals a run of its own with those values and that replica's seed. Values reach the
trainer as `hp` in Trainer.init(key, hp): optimizer values through
optax.inject_hyperparams (state, not constants), init values (forget_bias) directly."""
from __future__ import annotations

import itertools

import jax.numpy as jnp

from jaxdl.optimizers import injectable_clip

# the keys a population may vary, and the trainers that support them
KEYS = ("optim.lr", "optim.clip", "optim.weight_decay", "model.forget_bias")
# keys that change array shapes: one compiled program cannot vary them
SHAPE_KEYS = ("model.hidden", "model.layers", "tbptt.k1", "tbptt.k2")


def members(population: dict, replicas: int) -> tuple[list[dict], list[int]]:
    """-> (hparams of each member, replica index of each member)."""
    keys = sorted(population)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(population[k] for k in keys))] or [{}]
    hps, reps = [], []
    for hp in combos:
        for r in range(replicas):
            hps.append(hp)
            reps.append(r)
    return hps, reps


def stacked(hps: list[dict]) -> dict:
    """Member hyperparameters as arrays with a leading member axis: {key: [M]}. A clip of
    0 (no clipping) becomes an infinite max norm."""
    def value(k, v):
        return injectable_clip(float(v)) if k == "optim.clip" else float(v)
    return {k: jnp.asarray([value(k, h[k]) for h in hps], jnp.float32) for k in (hps[0] if hps else {})}
