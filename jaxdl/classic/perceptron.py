"""The perceptron (seed chapter 1): y = f(w . x + b) with the step function
f(z) = 1 if z > 0 else 0 (公式 1), trained by the perceptron rule

    w_i <- w_i + eta * (t - y) * x_i,     b <- b + eta * (t - y)

one sample at a time, weights and bias starting at 0. The linear unit (chapter 2)
is the same model and rule with f(z) = z; see linear_unit.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def step(z):
    """The source text's activation: 1 if z > 0 else 0."""
    return (z > 0).astype(jnp.result_type(z, jnp.float32))


def identity(z):
    return z


def init(n_inputs: int, dtype=jnp.float32):
    """Weights and bias at zero, as in the source text: {"w": [n], "b": []}."""
    return {"w": jnp.zeros((n_inputs,), dtype), "b": jnp.zeros((), dtype)}


def predict(params, x, activation=step):
    """x [..., n] -> y [...]."""
    return activation(x @ params["w"] + params["b"])


def rule_update(params, x, t, rate, activation=step):
    """One application of the perceptron rule to sample x [n] with label t."""
    delta = t - predict(params, x, activation)
    return {"w": params["w"] + rate * delta * x, "b": params["b"] + rate * delta}


def train(params, xs, ts, iterations: int, rate: float, activation=step):
    """`iterations` passes over the samples in order (the source text's train()),
    one update per sample. xs [N, n], ts [N]. Returns (params, per-pass accuracy [iterations])."""
    def one_pass(p, _):
        p, _ = jax.lax.scan(lambda p, xt: (rule_update(p, xt[0], xt[1], rate, activation), None),
                            p, (xs, ts))
        acc = (predict(p, xs, activation) == ts).mean()
        return p, acc
    return jax.lax.scan(one_pass, params, None, length=iterations)
