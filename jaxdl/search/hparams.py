"""The optimizer values a member trains with, inside its optimizer state.

With a population that varies optimizer values, the optimizer is
optax.inject_hyperparams(...) (jaxdl.train.optim), whose state holds them in
`.hyperparams` ({"learning_rate", "max_norm", "weight_decay"}: arrays [M] in a
member-stacked state). PBT's explore step rewrites them there, so the next update of
that member uses the new values with no recompilation."""
from __future__ import annotations

import jax
import optax

# population key -> the inject_hyperparams name (jaxdl.train.optim.make_optimizer)
NAMES = {"optim.lr": "learning_rate", "optim.clip": "max_norm", "optim.weight_decay": "weight_decay"}
_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _is_inject(x) -> bool:
    return isinstance(x, _STATES)


def _injected(state) -> list:
    return [x for x in jax.tree.leaves(state, is_leaf=_is_inject) if _is_inject(x)]


def read(state, keys) -> dict:
    """{population key: [M]} the values of `keys` in the state's inject_hyperparams state."""
    found = _injected(state)
    if not found:
        raise ValueError("the state holds no inject_hyperparams optimizer state; pbt needs a population "
                         "that varies an optimizer value (population.optim.lr=...)")
    return {k: found[0].hyperparams[NAMES[k]] for k in keys}


def scale(state, factors: dict):
    """The state with each inject_hyperparams value of {population key: [M] factor}
    multiplied by its factor, member by member; everything else unchanged."""
    def fix(x):
        if not _is_inject(x):
            return x
        hp = dict(x.hyperparams)
        for k, f in factors.items():
            hp[NAMES[k]] = hp[NAMES[k]] * f.astype(hp[NAMES[k]].dtype)
        return x._replace(hyperparams=hp)
    return jax.tree.map(fix, state, is_leaf=_is_inject)
