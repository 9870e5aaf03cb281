"""One LSTM training step on a GPU (forward, backward, Adam; LSTM + Dense readout on
every step, MSE), jaxdl against PyTorch nn.LSTM (cuDNN) and Flax
nn.RNN(OptimizedLSTMCell), at the four shapes of issue 11, in two precision modes,
with a bf16 column for jaxdl; medians and ratios from the same run, as a markdown table.

Modes:
  tf32  JAX's default matmul precision (TF32 on Ampere and later); PyTorch with
        torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 on.
  fp32  jax.default_matmul_precision("highest"); PyTorch with both TF32 switches off.
  bf16  jaxdl only: model.dtype=bfloat16 (bf16 matmul inputs, f32 accumulation, f32
        master weights, cell state and Adam state); its ratio is to PyTorch TF32.

Each peer runs in its own fresh process (all shapes and modes there, in interleaved order),
for --rounds rounds; a step is timed from dispatch to completion (block_until_ready /
torch.cuda.synchronize), --reps steps after --warmup untimed ones; the table shows the
median over all timed steps of all rounds. Ratio = jaxdl / PyTorch (below 1: jaxdl is
faster).

    python experiments/bench_gpu_step.py                    # on a GPU machine (about 2-3 min)
    python experiments/bench_gpu_step.py --smoke            # tiny shapes, runs on the CPU too
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_process import run_worker  # noqa: E402

SHAPES = [(64, 100, 32, 128), (64, 100, 32, 512), (256, 100, 128, 1024), (32, 500, 64, 256)]
SMOKE_SHAPES = [(4, 6, 3, 8)]
MODES = {"jaxdl": ("tf32", "fp32", "bf16"), "torch": ("tf32", "fp32"), "flax": ("tf32", "fp32")}


def _data(B, T, D, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, D)).astype(np.float32),
            rng.standard_normal((T, B, D)).astype(np.float32))


def _time(step, sync, warmup, reps):
    for _ in range(warmup):
        step()
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def bench_jaxdl(shape, mode, warmup, reps):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init

    B, T, D, H = shape
    x, y = (jnp.asarray(a) for a in _data(B, T, D))
    cd = "bfloat16" if mode == "bf16" else None
    opt = optax.adam(1e-3)

    def loss(p):
        ys, _ = rnn_apply(p, x, rnn_carry(p, B), compute_dtype=cd)
        return ((ys - y) ** 2).mean()

    @jax.jit
    def step(p, o):
        l, g = jax.value_and_grad(loss)(p)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o, l

    prec = "highest" if mode == "fp32" else None
    with jax.default_matmul_precision(prec):
        p = rnn_init(jax.random.PRNGKey(0), D, H, D)
        state = [p, opt.init(p), None]

        def run():
            state[0], state[1], state[2] = step(state[0], state[1])
        return _time(run, lambda: jax.block_until_ready(state[2]), warmup, reps)


def bench_flax(shape, mode, warmup, reps):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    B, T, D, H = shape
    x, y = (jnp.swapaxes(jnp.asarray(a), 0, 1) for a in _data(B, T, D))   # batch-major [B, T, D]

    class M(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(D)(nn.RNN(nn.OptimizedLSTMCell(H))(x))
    m, opt = M(), optax.adam(1e-3)

    @jax.jit
    def step(p, o):
        l, g = jax.value_and_grad(lambda p: ((m.apply(p, x) - y) ** 2).mean())(p)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o, l

    prec = "highest" if mode == "fp32" else None
    with jax.default_matmul_precision(prec):
        p = m.init(jax.random.PRNGKey(0), x)
        state = [p, opt.init(p), None]

        def run():
            state[0], state[1], state[2] = step(state[0], state[1])
        return _time(run, lambda: jax.block_until_ready(state[2]), warmup, reps)


def bench_torch(shape, mode, warmup, reps):
    import torch

    B, T, D, H = shape
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tf32 = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(0)
    lstm, lin = torch.nn.LSTM(D, H).to(dev), torch.nn.Linear(H, D).to(dev)   # time-major, cuDNN's layout
    x, y = (torch.from_numpy(a).to(dev) for a in _data(B, T, D))
    opt = torch.optim.Adam(list(lstm.parameters()) + list(lin.parameters()), 1e-3)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def run():
        opt.zero_grad(set_to_none=True)
        out, _ = lstm(x)
        loss = ((lin(out) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return _time(run, sync, warmup, reps)


BENCH = {"jaxdl": bench_jaxdl, "flax": bench_flax, "torch": bench_torch}


def worker(peer, shapes, warmup, reps):
    """All shapes and modes of one peer in this process -> {"B,T,D,H": {mode: [seconds]}}."""
    if peer == "torch":
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    out = {}
    for shape in shapes:
        key = ",".join(map(str, shape))
        out[key] = {mode: BENCH[peer](shape, mode, warmup, reps) for mode in MODES[peer]}
    if peer == "torch":
        import torch
        out["_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    else:
        import jax
        out["_device"] = jax.devices()[0].device_kind
    return out


def table(res, shapes):
    """Markdown table (median ms; ratio = jaxdl / PyTorch)."""
    def med(peer, key, mode):
        t = res.get(peer, {}).get(key, {}).get(mode)
        return statistics.median(t) * 1e3 if t else None

    f = lambda v: "-" if v is None else (f"{v:.3g}" if v < 10 else f"{v:.1f}")
    r = lambda a, b: "-" if a is None or b is None else f"**{a / b:.2f}**"
    lines = ["| B, T, D, H | jaxdl TF32 | PyTorch TF32 | ratio | Flax TF32 | jaxdl fp32 | PyTorch fp32 | ratio "
             "| Flax fp32 | jaxdl bf16 | bf16 / PyTorch TF32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = {}
    for shape in shapes:
        key = ",".join(map(str, shape))
        j32, t32, fl32 = med("jaxdl", key, "tf32"), med("torch", key, "tf32"), med("flax", key, "tf32")
        jfp, tfp, flfp = med("jaxdl", key, "fp32"), med("torch", key, "fp32"), med("flax", key, "fp32")
        jbf = med("jaxdl", key, "bf16")
        rows[key] = {"jaxdl_tf32": j32, "torch_tf32": t32, "flax_tf32": fl32, "jaxdl_fp32": jfp,
                     "torch_fp32": tfp, "flax_fp32": flfp, "jaxdl_bf16": jbf,
                     "ratio_tf32": j32 / t32 if j32 and t32 else None,
                     "ratio_fp32": jfp / tfp if jfp and tfp else None,
                     "ratio_bf16": jbf / t32 if jbf and t32 else None}
        lines.append(f"| {', '.join(map(str, shape))} | {f(j32)} | {f(t32)} | {r(j32, t32)} | {f(fl32)} | "
                     f"{f(jfp)} | {f(tfp)} | {r(jfp, tfp)} | {f(flfp)} | {f(jbf)} | {r(jbf, t32)} |")
    return "\n".join(lines), rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes and few steps (any machine, CPU included)")
    ap.add_argument("--peers", nargs="+", default=["jaxdl", "torch", "flax"], choices=sorted(BENCH))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--reps", type=int, default=None, help="timed steps per (shape, mode, round)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    shapes = SMOKE_SHAPES if a.smoke else SHAPES
    reps = a.reps or (2 if a.smoke else 30)
    warmup = a.warmup or (1 if a.smoke else 5)
    if a.worker:
        print(json.dumps(worker(a.worker, shapes, warmup, reps)))
        return None
    import importlib.util
    peers = [p for p in a.peers if importlib.util.find_spec({"jaxdl": "jax"}.get(p, p))]
    res, devices = {p: {} for p in peers}, {}
    for _ in range(a.rounds):
        for peer in peers:
            args = ["--worker", peer, "--reps", reps, "--warmup", warmup] + (["--smoke"] if a.smoke else [])
            out = run_worker(__file__, *args)
            devices[peer] = out.pop("_device")
            for key, modes in out.items():
                for mode, t in modes.items():
                    res[peer].setdefault(key, {}).setdefault(mode, []).extend(t)
    md, rows = table(res, shapes)
    print(f"One training step (LSTM + Dense on every step, MSE, Adam), median ms over {a.rounds} round(s) x "
          f"{reps} steps, a fresh process per peer and round; devices: "
          + ", ".join(f"{k}: {v}" for k, v in devices.items()))
    print(md)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "devices": devices, "raw": res}, indent=2))
    return {"rows": rows, "devices": devices, "markdown": md}


if __name__ == "__main__":
    main()
