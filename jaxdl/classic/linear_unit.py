"""The linear unit (seed chapter 2): y = w^T x (式1) with f(z) = z, fitted to the
objective E(w) = 1/2 sum_i (y_i - yhat_i)^2 (式2) by

  batch gradient descent (式3):  w <- w + eta * sum_i (y_i - yhat_i) x_i
  stochastic gradient descent :  the same rule one sample at a time (the source text's code).

x carries a constant 1 feature for the bias (the source text's x_0 = 1 / separate b)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.classic import perceptron


def init(n_inputs: int, dtype=jnp.float32):
    return perceptron.init(n_inputs, dtype)


def predict(params, x):
    return perceptron.predict(params, x, perceptron.identity)


def sgd(params, xs, ys, iterations: int, rate: float):
    """The source text's LinearUnit.train: per-sample rule, `iterations` passes in order."""
    return perceptron.train(params, xs, ys, iterations, rate, perceptron.identity)[0]


def batch_gd(params, xs, ys, iterations: int, rate: float):
    """式3: every update uses the summed error over all samples. xs [N, n], ys [N]."""
    def upd(p, _):
        err = ys - predict(p, xs)                       # [N]
        return {"w": p["w"] + rate * err @ xs, "b": p["b"] + rate * err.sum()}, None
    return jax.lax.scan(upd, params, None, length=iterations)[0]


def least_squares(xs, ys):
    """Closed-form minimiser of 式2, for checking: (w [n], b)."""
    a = jnp.concatenate([xs, jnp.ones((xs.shape[0], 1), xs.dtype)], axis=1)
    sol = jnp.linalg.lstsq(a, ys)[0]
    return {"w": sol[:-1], "b": sol[-1]}
