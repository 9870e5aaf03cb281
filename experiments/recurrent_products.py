"""The LSTM's per-step recurrent products on the CPU in their two forms, under XLA flag variants.

A scan of S steps of one product each, B rows, the operand depending on the carry (so
XLA cannot hoist it out of the loop), process CPU time per scan, one core:

    forward   rows_left:   z = h @ Wh                    [B, H] x [H, 4H]
              weight_left: z = (Wh^T @ h^T)^T            [4H, H] x [H, B]
    backward  rows_left:   dh = dz @ Wh^T                [B, 4H] x [4H, H]
              weight_left: dh = (Wh @ dz^T)^T            [H, 4H] x [4H, B]

weight_left is jaxdl.models.products.matmul_weight_left (what jaxdl.models.lstm runs on
the CPU from weight_left's size on). Each variant (an environment, e.g. XLA_FLAGS=...)
runs in a fresh process per round, variants interleaved; the table gives medians over
rounds and every time's ratio to the first variant's rows_left form of the same product.

    python experiments/recurrent_products.py --hidden 128 512 1024 --rounds 3 \\
        --variant "" --variant "XLA_FLAGS=--xla_cpu_use_onednn=true"
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import partial

from fresh_process import run_worker


def measure(H, B, S, reps):
    """{form: seconds of CPU time per scan of S steps} at hidden size H, B rows."""
    import jax
    import jax.numpy as jnp

    from jaxdl.models.products import matmul_weight_left

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    wh = jax.random.normal(k1, (H, 4 * H)) / H ** 0.5
    h0 = jax.random.normal(k2, (B, H))
    dz0 = jax.random.normal(k3, (B, 4 * H))

    def scan(f, x0):
        return jax.lax.scan(lambda x, _: (f(x), None), x0, None, length=S)[0]

    forms = {   # each step's output feeds the next step's product
        "forward rows_left": (lambda w, h: scan(lambda h: jnp.tanh((h @ w)[:, :H]), h), h0),
        "forward weight_left": (lambda w, h: scan(   # Wh^T formed outside the loop, as jaxdl does
            partial(lambda w_t, h: jnp.tanh(matmul_weight_left(h, w_t, None)[:, :H]), w.T), h), h0),
        "backward rows_left": (lambda w, d: scan(lambda d: jnp.tile(jnp.tanh(d @ w.T), (1, 4)), d), dz0),
        "backward weight_left": (lambda w, d: scan(
            lambda d: jnp.tile(jnp.tanh(matmul_weight_left(d, w, None)), (1, 4)), d), dz0),
    }
    out = {}
    for name, (f, x0) in forms.items():
        g = jax.jit(f)
        g(wh, x0).block_until_ready()
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            g(wh, x0).block_until_ready()
            times.append(time.process_time() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 512, 1024])
    ap.add_argument("--batch", type=int, default=32, help="B, the rows of each product")
    ap.add_argument("--steps", type=int, default=100, help="S, the steps of each scan")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", action="append", default=None,
                    help='an environment for the workers, "NAME=value ..." ("" = as is); repeatable')
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])
        print(json.dumps({H: measure(H, a.batch, a.steps, a.reps) for H in a.hidden}))
        return
    variants = a.variant or [""]
    args = ["--worker", "--batch", a.batch, "--steps", a.steps, "--reps", a.reps, "--hidden", *a.hidden]
    runs = {v: [] for v in variants}
    for _ in range(a.rounds):
        for v in variants:
            env = dict(kv.split("=", 1) for kv in v.split()) if v else {}
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                runs[v].append(run_worker(os.path.abspath(__file__), *args))
            finally:
                for k, old in saved.items():
                    os.environ.pop(k) if old is None else os.environ.__setitem__(k, old)
    print(f"B={a.batch}, {a.steps} steps per scan, one core, process CPU time; {a.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| variant | H | product | form | ms per scan | GFLOP/s | ratio to the first variant's rows_left |")
    print("|---|---|---|---|---|---|---|")
    for H in map(str, a.hidden):
        flops = 2 * a.batch * int(H) * 4 * int(H) * a.steps
        base = {p: statistics.median(r[H][f"{p} rows_left"] for r in runs[variants[0]])
                for p in ("forward", "backward")}
        for v in variants:
            for name in runs[v][0][H]:
                t = statistics.median(r[H][name] for r in runs[v])
                prod, form = name.split()
                print(f"| {v or 'as is'} | {H} | {prod} | {form} | {t * 1e3:.1f} | {flops / t / 1e9:.0f} | "
                      f"{base[prod] / t:.2f}x |")


if __name__ == "__main__":
    main()
