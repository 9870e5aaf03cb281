"""A population's members: grid combinations x `samples` points drawn from the
distributions x replicas (Bergstra & Bengio 2012's random search, inside one program).

Member i = (combination, sample, replica), replica fastest, then sample. The draws come
from numpy's Generator seeded with (seed, DRAW_STREAM): the same command draws the same
members, and they do not depend on the grid or the replicas beside them. Log-uniform
draws are exp(uniform(log low, log high))."""
from __future__ import annotations

import numpy as np

from jaxdl.search.spec import SearchSpec
from jaxdl.train import population

DRAW_STREAM = 0x5EA2C4      # a second seed word: the draws' stream is apart from every other use of the seed


def draw(search: SearchSpec, seed: int) -> list[dict]:
    """The `samples` drawn points [{key: value}] (one {} when nothing is drawn)."""
    if not search.draws:
        return [{}]
    rng = np.random.default_rng([seed, DRAW_STREAM])
    cols = {}
    for key in sorted(search.draws):
        d = search.draws[key]
        u = rng.uniform(size=search.samples)
        if d.kind == "loguniform":
            cols[key] = np.exp(np.log(d.low) + u * (np.log(d.high) - np.log(d.low)))
        else:
            cols[key] = d.low + u * (d.high - d.low)
    return [{k: float(v[j]) for k, v in cols.items()} for j in range(search.samples)]


def members(search: SearchSpec, replicas: int, seed: int) -> tuple[list[dict], list[int]]:
    """-> (hparams of each member, replica index of each member)."""
    combos, _ = population.members(search.grid, 1)
    hps, reps = [], []
    for combo in combos:
        for point in draw(search, seed):
            for r in range(replicas):
                hps.append({**combo, **point})
                reps.append(r)
    return hps, reps
