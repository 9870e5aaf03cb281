"""Memory of TBPTT training stays flat in stream length.

Trains an LSTM with TBPTT(k1, k2) on one long echo stream of 10^4, 10^5 and 10^6
steps (B parallel streams), fed to the device in chunks of --chunk steps (the
engine is exact across chunk boundaries), each length in a fresh process, and
prints the peak resident memory of that process (and the device's peak bytes in
use where the backend reports it).

    ./launch.sh py experiments/bench_tbptt_memory.py [--lengths 10000 100000 1000000]
"""
from __future__ import annotations

import argparse
import json
import resource
import time

from fresh_process import run_worker


def train_stream(n: int, chunk: int, k1: int, k2: int, hidden: int, streams: int, lag: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
    from jaxdl.objectives import softmax_xent
    from jaxdl.train.tbptt import Batch, make_schedule, make_tbptt

    V = 4
    opt = optax.adam(3e-3)
    chunk = min(chunk, n)
    eng = make_tbptt(lambda p, x, c, m: rnn_apply(p, x, c, m), softmax_xent, opt, rnn_carry,
                     make_schedule(chunk, k1, k2), reset="never")
    params = rnn_init(jax.random.PRNGKey(0), V, hidden, V)
    opt_state = opt.init(params)
    rng = np.random.default_rng(0)
    prev = rng.integers(0, V, (lag, streams))

    def make_chunk():
        nonlocal prev
        s = rng.integers(0, V, (chunk, streams))
        full = np.concatenate([prev, s])
        y = full[:chunk]                          # the symbol `lag` steps earlier
        prev = full[-lag:]
        ones = np.ones((chunk, streams), np.float32)
        return Batch(jnp.asarray(np.eye(V, dtype=np.float32)[s]), jnp.asarray(y, jnp.int32),
                     jnp.asarray(ones), jnp.asarray(ones))

    b = make_chunk()
    state = eng.fresh_state(params, b)
    step = jax.jit(eng.run_batch, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    losses = []
    for i in range(n // chunk):
        if i:
            b = make_chunk()
        params, opt_state, state, out = step(params, opt_state, state, b)
        losses.append(out["sums"]["loss"].sum() / out["weight"].sum())
    jax.block_until_ready(params)
    dt = time.perf_counter() - t0
    stats = jax.devices()[0].memory_stats() or {}
    return {"steps": n, "chunk": chunk, "k1": k1, "k2": k2, "hidden": hidden, "streams": streams,
            "updates": (n // chunk) * eng.schedule.updates, "seconds": round(dt, 2),
            "first_loss": float(losses[0]), "last_loss": float(losses[-1]),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "device_peak_mb": round(stats["peak_bytes_in_use"] / 2**20, 1) if "peak_bytes_in_use" in stats else None,
            "device": jax.devices()[0].device_kind}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--k1", type=int, default=10)
    ap.add_argument("--k2", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--lag", type=int, default=5)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one is not None:
        print(json.dumps(train_stream(a.one, a.chunk, a.k1, a.k2, a.hidden, a.streams, a.lag)))
        return
    print(f"TBPTT(k1={a.k1}, k2={a.k2}), H={a.hidden}, B={a.streams} streams, chunks of {a.chunk} steps")
    print(f"{'steps':>9} {'updates':>9} {'seconds':>8} {'loss first->last':>18} {'peak RSS MB':>12} "
          f"{'device peak MB':>15}")
    rows = []
    for n in a.lengths:
        r = run_worker(__file__, "--one", n, "--chunk", a.chunk, "--k1", a.k1, "--k2", a.k2,
                       "--hidden", a.hidden, "--streams", a.streams, "--lag", a.lag)
        rows.append(r)
        print(f"{r['steps']:>9} {r['updates']:>9} {r['seconds']:>8} "
              f"{r['first_loss']:>8.3f} -> {r['last_loss']:<6.3f} {r['peak_rss_mb']:>12} "
              f"{str(r['device_peak_mb']):>15}")
    return rows


if __name__ == "__main__":
    main()
