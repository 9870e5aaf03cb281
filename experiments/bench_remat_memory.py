"""Peak memory and time of TBPTT against the backward window k2, with and without
model.remat (activations recomputed from checkpoints every sqrt(k2) steps).

Each point trains TBPTT(k1=k2, k2) (one update per window) on an echo stream of
--updates * k2 steps, H=--hidden, B=--streams, Adam, in a fresh process, and prints:
the peak resident memory of that process (ru_maxrss: what the machine must hold, data,
compiled program and runtime included), XLA's planned temporary memory of the compiled
update (the activations it stores: exact, and what grows with k2), the device's peak bytes
in use where the backend reports it (GPUs), and the seconds per update after compilation.

    ./launch.sh py experiments/bench_remat_memory.py [--k2 1000 10000 100000] [--hidden 64]

A point without remat whose stored activations would exceed --limit-gb (estimated as 12
float32 [B, H] arrays per step, what the LSTM stores and the backward's gate gradients) is
skipped and printed as such, instead of exhausting the machine.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_process import run_worker  # noqa: E402


def train_point(k2: int, remat: str, hidden: int, streams: int, updates: int, lag: int, dtype: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
    from jaxdl.objectives import softmax_xent
    from jaxdl.train.tbptt import Batch, make_schedule, make_tbptt

    V = 4
    T = updates * k2
    rng = np.random.default_rng(0)
    s = rng.integers(0, V, (T, streams))
    y = np.zeros_like(s)
    y[lag:] = s[:-lag]
    w = np.ones((T, streams), np.float32)
    w[:lag] = 0
    batch = Batch(jnp.asarray(np.eye(V, dtype=np.float32)[s]), jnp.asarray(y, jnp.int32),
                  jnp.ones((T, streams), jnp.float32), jnp.asarray(w))
    opt = optax.adam(3e-3)
    r = None if remat == "none" else remat
    cd = None if dtype == "float32" else dtype
    apply_fn = lambda p, x, c, m: rnn_apply(p, x, c, m, compute_dtype=cd, remat=r)
    eng = make_tbptt(apply_fn, softmax_xent, opt, rnn_carry, make_schedule(T, k2, k2), reset="never")
    params = rnn_init(jax.random.PRNGKey(0), V, hidden, V)
    opt_state = opt.init(params)
    state = eng.fresh_state(params, batch)
    step = jax.jit(eng.run_batch, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    compiled = step.lower(params, opt_state, state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp_mb = round(mem.temp_size_in_bytes / 2**20, 1) if mem is not None else None
    params, opt_state, state, out = compiled(params, opt_state, state, batch)   # first run (warm-up)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    params, opt_state, state, out = compiled(params, opt_state, state, batch)
    jax.block_until_ready(out)
    dt = time.perf_counter() - t0
    loss = out["sums"]["loss"] / jnp.maximum(out["weight"], 1.0)
    stats = jax.devices()[0].memory_stats() or {}
    return {"k2": k2, "remat": remat, "hidden": hidden, "streams": streams, "dtype": dtype,
            "updates": eng.schedule.updates, "s_per_update": round(dt / eng.schedule.updates, 3),
            "compile_s": round(compile_s, 1), "loss": float(loss[-1]),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "xla_temp_mb": temp_mb,
            "device_peak_mb": round(stats["peak_bytes_in_use"] / 2**20, 1) if "peak_bytes_in_use" in stats else None,
            "device": jax.devices()[0].device_kind}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k2", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--remat", nargs="+", default=["none", "sqrt"], choices=["none", "sqrt"])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--updates", type=int, default=2, help="windows per stream (timed: the second pass)")
    ap.add_argument("--lag", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--limit-gb", type=float, default=8.0, help="skip no-remat points whose activations exceed this")
    ap.add_argument("--json", default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        k2, remat = a.one.split(":")
        print(json.dumps(train_point(int(k2), remat, a.hidden, a.streams, a.updates, a.lag, a.dtype)))
        return None
    print(f"TBPTT(k1=k2, k2), LSTM H={a.hidden} + readout, B={a.streams} streams, echo (lag {a.lag}), "
          f"Adam, {a.updates} updates per point, dtype {a.dtype}; a fresh process per point")
    print(f"{'k2':>8} {'remat':>6} {'peak RSS MB':>12} {'XLA temp MB':>12} {'device peak MB':>15} "
          f"{'s/update':>9} {'compile s':>10} {'loss':>7}")
    rows = []
    for k2 in a.k2:
        for remat in a.remat:
            est_gb = 12 * k2 * a.streams * a.hidden * 4 / 2**30
            if remat == "none" and est_gb > a.limit_gb:
                print(f"{k2:>8} {remat:>6}   skipped: stored activations ~{est_gb:.1f} GB > --limit-gb {a.limit_gb}")
                rows.append({"k2": k2, "remat": remat, "skipped_est_gb": round(est_gb, 1)})
                continue
            r = run_worker(__file__, "--one", f"{k2}:{remat}", "--hidden", a.hidden, "--streams", a.streams,
                           "--updates", a.updates, "--lag", a.lag, "--dtype", a.dtype)
            rows.append(r)
            print(f"{k2:>8} {remat:>6} {r['peak_rss_mb']:>12} {str(r['xla_temp_mb']):>12} "
                  f"{str(r['device_peak_mb']):>15} {r['s_per_update']:>9} {r['compile_s']:>10} {r['loss']:>7.3f}",
                  flush=True)
    if rows and "device" in rows[-1]:
        print(f"device: {rows[-1]['device']}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
