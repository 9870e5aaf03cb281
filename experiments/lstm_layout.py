"""The LSTM's state batch-major ([B, H], jaxdl's layout) against feature-major ([H, B]) on the CPU.

XLA:CPU's product [B, K] x [K, 4H] with few rows (B = 32) runs well below the peak that
[4H, K] x [K, B] reaches (one core: about 87 against 128 GFLOP/s at K = 512, 4H = 2048). This
script asks whether keeping the state feature-major, z^T = Wx^T x^T + Wh^T h^T + b, pays for a
whole training step: forward, the reverse scan (dh^T = Wh dz^T) and the weight gradients (one
contraction of dz^T against [x^T; h^T] over time and batch), against jaxdl's `lstm_scan` and its
hand-written VJP, on one thread, in process CPU time.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        taskset -c 0 python experiments/lstm_layout.py --sizes 32,512,100,65 32,256,100,65 32,128,50,64

Each size is B,H,T,D. Prints the gradients' largest difference (the two must agree) and the
milliseconds of the training step and of the forward pass alone, best of 5.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's jaxdl

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxdl.models.lstm import lstm_init, lstm_scan, zero_carry  # noqa: E402


def feature_major_forward(wxT, whT, b, xsT):
    """xsT [T, D, B] -> (hs, cs, acts) each [T, ., B]: the LSTM with its state [H, B]."""
    H, B = whT.shape[1], xsT.shape[2]

    def step(carry, xT):
        h, c = carry
        z = wxT @ xT + whT @ h + b[:, None]
        i, f = jax.nn.sigmoid(z[:H]), jax.nn.sigmoid(z[H:2 * H])
        g, o = jnp.tanh(z[2 * H:3 * H]), jax.nn.sigmoid(z[3 * H:])
        c2 = f * c + i * g
        h2 = o * jnp.tanh(c2)
        return (h2, c2), (h2, c2, jnp.concatenate([i, f, g, o]))
    zero = jnp.zeros((H, B), xsT.dtype)
    return jax.lax.scan(step, (zero, zero), xsT)[1]


def feature_major_grad(p, xs, gout):
    """d/dparams of sum(hs * gout) for xs [T, B, D], gout [T, B, H], zero initial state."""
    H = p.wh.shape[0]
    xsT, goT = jnp.swapaxes(xs, 1, 2), jnp.swapaxes(gout, 1, 2)
    hs, cs, acts = feature_major_forward(p.wx.T, p.wh.T, p.b, xsT)
    cprev = jnp.concatenate([jnp.zeros_like(cs[:1]), cs[:-1]])

    def step(carry, t_in):
        dh, dc = carry
        go, c, cp, a = t_in
        i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        dh = dh + go
        tc = jnp.tanh(c)
        dc = dc + dh * o * (1 - tc ** 2)
        dz = jnp.concatenate([dc * g * i * (1 - i), dc * cp * f * (1 - f), dc * i * (1 - g ** 2),
                              dh * tc * o * (1 - o)])
        return (p.wh @ dz, dc * f), dz
    zero = jnp.zeros_like(hs[0])
    _, dzs = jax.lax.scan(step, (zero, zero), (goT, cs, cprev, acts), reverse=True)     # [T, 4H, B]
    hprev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]])
    contract = lambda a, b: jax.lax.dot_general(a, b, (((0, 2), (0, 2)), ((), ())))     # over t and b
    return contract(dzs, xsT).T, contract(dzs, hprev).T, dzs.sum((0, 2))


def best_ms(f, reps: int = 5) -> float:
    jax.block_until_ready(f())
    ts = []
    for _ in range(reps):
        t = time.process_time()
        jax.block_until_ready(f())
        ts.append(time.process_time() - t)
    return min(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["32,512,100,65", "32,256,100,65", "32,128,50,64"])
    for size in ap.parse_args().sizes:
        B, H, T, D = (int(v) for v in size.split(","))
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
        p = lstm_init(k1, D, H)
        xs, gout = jax.random.normal(k2, (T, B, D)), jax.random.normal(k3, (T, B, H))
        ours = jax.jit(jax.grad(lambda p: jnp.sum(lstm_scan(p, xs, zero_carry(B, H))[0] * gout)))
        fm = jax.jit(feature_major_grad)
        a, b = ours(p), fm(p, xs, gout)
        diff = max(float(jnp.abs(a.wx - b[0]).max()), float(jnp.abs(a.wh - b[1]).max()),
                   float(jnp.abs(a.b - b[2]).max()))
        fwd_ours = jax.jit(lambda p: lstm_scan(p, xs, zero_carry(B, H))[0])
        fwd_fm = jax.jit(lambda p: feature_major_forward(p.wx.T, p.wh.T, p.b, jnp.swapaxes(xs, 1, 2))[0])
        print(f"B={B} H={H} T={T} D={D}: step {best_ms(lambda: ours(p)):.1f} ms batch-major, "
              f"{best_ms(lambda: fm(p, xs, gout)):.1f} ms feature-major; forward {best_ms(lambda: fwd_ours(p)):.1f} / "
              f"{best_ms(lambda: fwd_fm(p)):.1f} ms; max |grad difference| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
