"""The perceptron and the linear unit as trainers of jaxdl's one training loop: an
epoch is one pass of the source text's rule over the samples in order (the perceptron rule,
or the linear unit's per-sample rule), or one batch step of 式3; weights and bias
start at zero, so every member starts alike."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.classic import linear_unit, perceptron
from jaxdl.config.schema import LinearConfig, PerceptronConfig
from jaxdl.train.loop import Trainer


def rule_trainer(data, model: PerceptronConfig | LinearConfig) -> Trainer:
    """data {"train": (x [N, n], t [N])}. model=perceptron: the step activation; model=linear:
    the identity, with model.rule "sgd" (N updates per epoch, one per sample,
    perceptron.rule_update) or "batch" (one update per epoch, linear_unit's 式3); both at
    model.rate. Metrics: accuracy for the step activation, mse for the identity, after the
    epoch."""
    x, t = (jnp.asarray(a) for a in data["train"])
    activation = perceptron.step if model.name == "perceptron" else perceptron.identity
    rule = getattr(model, "rule", "sgd")
    rate = model.rate

    def init(key, hp):
        return {"params": perceptron.init(x.shape[1])}

    def per_sample_pass(p):
        def step(p, xt):
            xi, ti = xt
            err = ti - perceptron.predict(p, xi, activation)
            return perceptron.rule_update(p, xi, ti, rate, activation), 0.5 * err ** 2
        return jax.lax.scan(step, p, (x, t))

    def batch_step(p):
        err = t - perceptron.predict(p, x, activation)
        return linear_unit.batch_gd(p, x, t, 1, rate), (0.5 * (err ** 2).sum())[None]

    def train_epoch(state, _):
        p, losses = (per_sample_pass if rule == "sgd" else batch_step)(state["params"])
        y = perceptron.predict(p, x, activation)
        m = {"accuracy": (y == t).mean()} if activation is perceptron.step else {"mse": ((y - t) ** 2).mean()}
        return {"params": p}, {"losses": losses, "metrics": {"loss": losses.mean(), **m}}

    return Trainer(init, train_epoch, lambda state, split: {}, lambda epoch: None, {},
                   len(x) if rule == "sgd" else 1)
