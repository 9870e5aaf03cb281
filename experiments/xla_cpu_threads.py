"""How many cores XLA:CPU puts on an LSTM-sized per-step product: a jitted `lax.scan` of T steps
of h <- tanh(z_i) * sigmoid(z_f), z = h @ W ([B, H] x [H, 4H]), timed in wall and process CPU
time; CPU / wall is the cores it kept busy (1.00: one thread did the work).

    python experiments/xla_cpu_threads.py --sizes 128,128 32,128 32,512
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp


def probe(B: int, H: int, T: int = 200, reps: int = 10) -> tuple[float, float]:
    """(wall us per step, CPU us per step)."""
    k = jax.random.PRNGKey(0)
    W, h0 = jax.random.normal(k, (H, 4 * H)) * 0.05, jax.random.normal(k, (B, H))

    @jax.jit
    def run(W, h):
        def step(h, _):
            z = h @ W
            return jnp.tanh(z[:, :H]) * jax.nn.sigmoid(z[:, H:2 * H]), None
        return jax.lax.scan(step, h, None, length=T)[0]
    run(W, h0).block_until_ready()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        run(W, h0).block_until_ready()
    return (time.perf_counter() - w0) / reps / T * 1e6, (time.process_time() - c0) / reps / T * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["128,128", "32,128", "32,512"], help="B,H pairs")
    for size in ap.parse_args().sizes:
        B, H = (int(v) for v in size.split(","))
        wall, cpu = probe(B, H)
        print(f"B={B} H={H}: wall {wall:.1f} us/step, CPU {cpu:.1f} us/step, CPU / wall {cpu / wall:.2f}")


if __name__ == "__main__":
    main()
