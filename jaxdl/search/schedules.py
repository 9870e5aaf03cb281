"""The decisions of a schedule, as pure functions of the members' val scores.

Successive halving (Jamieson & Talwalkar 2016; the synchronous form of ASHA, Li et
al. 2020): at a rung, keep the best max(1, floor(n * keep)) of n members.
PBT (Jaderberg et al. 2017, truncation selection): the bottom n_b = floor(M * truncate)
members each copy the whole state (parameters, optimizer state, sequence carry) of a
member drawn uniformly from the top n_b (exploit), then multiply each copied optimizer
value by a factor drawn uniformly from `perturb` (explore). Members that are not in the
bottom are untouched. Ties rank by member slot; a non-finite score ranks last."""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.search import hparams

PBT_STREAM = 0x9B7      # fold_in word: PBT's keys are apart from the init and data keys of the seed


def ranking(scores, higher: bool, xp=np):
    """Slots best first (stable: ties by slot; NaN last). scores [M]."""
    worst = -xp.inf if higher else xp.inf
    s = xp.where(xp.isfinite(scores), scores, worst)
    return xp.argsort(-s if higher else s, stable=True)


def kept(n: int, keep: float) -> int:
    """Halving: how many of n members a rung keeps, max(1, floor(n * keep))."""
    return max(1, math.floor(n * keep))


def survivors(scores, keep: float, higher: bool) -> np.ndarray:
    """Halving: the slots kept at a rung, ascending. scores [n] (host values)."""
    return np.sort(ranking(np.asarray(scores, np.float64), higher, np)[:kept(len(scores), keep)])


def pbt_key(seed: int, epoch: int):
    """The key of PBT's decision after `epoch`: a function of the run's seed and the epoch,
    so a resumed run draws what the uninterrupted one drew."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), PBT_STREAM), epoch)


@partial(jax.jit, static_argnames=("n", "keys", "higher"))
def exploit_explore(state, scores, key, perturb, *, n: int, keys: tuple, higher: bool):
    """One PBT step on the member-stacked state (every leaf [M, ...]), on device.

    scores [M] val headline; perturb [F] factors; n members copied; keys: the population
    optimizer keys to explore. -> (state, src [M] the slot each member now holds a copy
    of (itself when not copied), factors {key: [M]} (1 where not copied))."""
    m = scores.shape[0]
    order = ranking(scores, higher, jnp)
    top, bottom = order[:n], order[m - n:]
    k_donor, k_factor = jax.random.split(key)
    donors = top[jax.random.randint(k_donor, (n,), 0, n)]
    src = jnp.arange(m).at[bottom].set(donors)
    copied = jax.tree.map(lambda x: x[src], state)
    fkeys = jax.random.split(k_factor, len(keys))
    factors = {k: jnp.ones(m, jnp.float32).at[bottom].set(jax.random.choice(fk, perturb, (n,)))
               for k, fk in zip(keys, fkeys)}
    return hparams.scale(copied, factors), src, factors
