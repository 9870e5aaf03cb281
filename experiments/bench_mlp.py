"""Speed of an MNIST epoch (784-300-10 sigmoid, squared error, SGD), measured in one run:

  jaxdl trainer epoch (jaxdl.train.classifier_trainer.make_epoch, the delta-rule grads)
  a plain one-jit lax.scan epoch written here (autodiff, same math)
  a NumPy per-sample implementation of the source text's vectorised fc.py code

at batch size 1 (the source text's recipe: one sample per update) and 32. NumPy is timed on
--numpy-samples samples and scaled to 60,000.

    ./launch.sh py experiments/bench_mlp.py [--data ../shared/data/mnist]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.classic.backprop import delta_rule_value_and_grad
from jaxdl.data.images import mnist
from jaxdl.models.mlp import mlp_init
from jaxdl.classic.classifier_trainer import encode_targets, make_epoch


def reference_epoch(batch_size, n, lr):
    """The plainest one-jit epoch: scan over batches, jax.grad, params - lr * g."""
    nb = n // batch_size

    def loss(p, x, t):
        h = jax.nn.sigmoid(x @ p[0]["w"] + p[0]["b"])
        y = jax.nn.sigmoid(h @ p[1]["w"] + p[1]["b"])
        return 0.5 * ((t - y) ** 2).sum(-1).mean()

    @jax.jit
    def epoch(p, x, t):
        xb = x[: nb * batch_size].reshape(nb, batch_size, -1)
        tb = t[: nb * batch_size].reshape(nb, batch_size, -1)

        def step(p, b):
            g = jax.grad(loss)(p, *b)
            return jax.tree.map(lambda a, ga: a - lr * ga, p, g), None
        return jax.lax.scan(step, p, (xb, tb))[0]
    return epoch


def numpy_seed_epoch(params, x, t, lr):
    """The source text's fc.py, vectorised per sample: forward 式2, deltas 式7/式8, update 式9/式10."""
    W1, b1, W2, b2 = (np.array(a, np.float64) for a in params)   # seed layout W [out, in]
    for i in range(len(x)):
        a0 = x[i]
        a1 = 1 / (1 + np.exp(-(W1 @ a0 + b1)))
        y = 1 / (1 + np.exp(-(W2 @ a1 + b2)))
        d2 = y * (1 - y) * (t[i] - y)
        d1 = a1 * (1 - a1) * (W2.T @ d2)
        W2 += lr * np.outer(d2, a1)
        b2 += lr * d2
        W1 += lr * np.outer(d1, a0)
        b1 += lr * d1
    return W1, b1, W2, b2


def timeit(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--numpy-samples", type=int, default=3000)
    a = ap.parse_args(argv)
    x_tr, y_tr, _, _ = mnist("idx", a.data)
    n = len(x_tr)
    t_tr = encode_targets(y_tr, 10, "half_sse")
    x, t = jnp.asarray(x_tr), jnp.asarray(t_tr)
    p0 = mlp_init(jax.random.PRNGKey(0), [784, 300, 10], "uniform_0.1")
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; MNIST {n} samples, 784-300-10")
    res = {}
    for bs in (1, 32):
        opt = optax.sgd(0.3 if bs == 1 else 1.0)
        ep, _ = make_epoch(delta_rule_value_and_grad, opt, bs, n, shuffle=False)
        ep = jax.jit(ep)
        o0 = opt.init(p0)
        key = jax.random.PRNGKey(0)
        ref = reference_epoch(bs, n, 0.3 if bs == 1 else 1.0)
        jax.block_until_ready(ep(p0, o0, key, x, t))
        jax.block_until_ready(ref(p0, x, t))
        tj, tr = [], []
        for _ in range(a.reps):   # interleaved
            tj.append(timeit(lambda: ep(p0, o0, key, x, t)[0], 1))
            tr.append(timeit(lambda: ref(p0, x, t), 1))
        res[bs] = (statistics.median(tj), statistics.median(tr))
    m = a.numpy_samples
    p_np = [np.asarray(p0[0]["w"]).T, np.asarray(p0[0]["b"]), np.asarray(p0[1]["w"]).T, np.asarray(p0[1]["b"])]
    t0 = time.perf_counter()
    numpy_seed_epoch(p_np, x_tr[:m].astype(np.float64), t_tr[:m].astype(np.float64), 0.3)
    t_np = (time.perf_counter() - t0) * n / m
    print(f"\n{'':34s} {'s/epoch':>9} {'vs one-jit ref':>15} {'vs NumPy':>9}")
    for bs, (tj, tr) in res.items():
        print(f"jaxdl trainer, batch {bs:<3d}             {tj:9.2f} {tj / tr:14.2f}x {t_np / tj:8.1f}x faster")
        print(f"one-jit lax.scan reference, batch {bs:<3d} {tr:9.2f}")
    print(f"NumPy per sample (its fc.py)         {t_np:9.2f}   (timed on {m} samples, scaled)")
    print("the source text reports about 9000 s per epoch for its object-oriented version")
    return res, t_np


if __name__ == "__main__":
    main()
