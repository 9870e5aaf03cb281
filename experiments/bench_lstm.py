"""One LSTM training step (forward, backward, Adam update) with a Dense readout on
every step, B=32 T=100 D=32 (--batch), against peers measured in the same run:
Flax nn.RNN(OptimizedLSTMCell), a plain lax.scan LSTM with autodiff, Keras 3 on
JAX, PyTorch nn.LSTM, jaxdl_rows_left (jaxdl with its per-step recurrent products
in the [B, K] x [K, N] form at every size, jaxdl.models.products.weight_left) and
jaxdl_data2 (jaxdl with the B streams split over two CPU devices, as mesh.data=2).
Prints median times and ratios to the fastest.
Also checks jaxdl against PyTorch given identical weights (outputs, gradients).

    ./launch.sh bench experiments/bench_lstm.py [--hidden 128 512] [--reps 15]
    ./launch.sh bench experiments/bench_lstm.py --peers jaxdl torch --hidden 64 128 256 512 1024   # the size sweep

With jaxdl and torch among the peers, a last table gives jaxdl's speed relative to
PyTorch per size (PyTorch's time / jaxdl's, the median of the per-round ratios), on this
machine's CPU and, where a GPU is present (CUDA for both), on the GPU; the other column
stays empty. With jaxdl_data2 or jaxdl_rows_left among them too, a column each gives their
ratio likewise.

jaxdl's workers size XLA:CPU's thread pool as ./launch.sh does (mesh.cpu_threads=0,
jaxdl.run.mesh.cpu_threads_for: every core for the size sweep's steps, 64 units and up).

Each (peer, size, round) runs in a fresh Python process by default, in interleaved
rounds, so no peer inherits another's thread pools (PyTorch's OpenMP workers, XLA's
Eigen pool) or allocator state; `--in-process` runs them all in this process instead.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fresh_process import run_worker
from jaxdl.models.dense import dense_apply
from jaxdl.models.lstm import LSTMParams, lstm_scan, lstm_scan_reference
from jaxdl.models.rnn import rnn_init

B, T, D = 32, 100, 32   # B: --batch
EXTRA_COLUMNS = ("jaxdl_data2", "jaxdl_rows_left")   # the size sweep's table: each one's speed against PyTorch


def jax_step_fn(scan, hoist=None, out_shardings=None):
    """(the jitted training step (params, opt state, x, y) -> (params, opt state, loss), its
    optimizer); out_shardings: the step's outputs' placement (a device mesh)."""
    opt = optax.adam(1e-3)

    def loss(p, x, y):
        c0 = (jnp.zeros((B, p["layers"][0].wh.shape[0])),) * 2
        if scan is lstm_scan:
            hs, _ = lstm_scan(p["layers"][0], x, c0, hoist=hoist)
        else:
            hs, _ = scan(p["layers"][0], x, c0)
        return ((dense_apply(p["readout"], hs) - y) ** 2).mean()

    def step(p, o, x, y):
        l, g = jax.value_and_grad(loss)(p, x, y)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o, l
    return jax.jit(step, out_shardings=out_shardings), opt


def clock():
    """The timer: wall time, or with BENCH_CLOCK=cpu (--clock cpu) the process's CPU time
    (all its threads), which a loaded machine disturbs far less on one pinned core."""
    return time.process_time() if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter()


def time_steps(step, p, o, x, y, reps):
    """Seconds per call of a jitted (params, opt_state, x, y) -> (params, opt_state, loss), after one warm-up."""
    p, o, l = step(p, o, x, y)
    jax.block_until_ready(l)
    times = []
    for _ in range(reps):
        t0 = clock()
        p, o, l = step(p, o, x, y)
        jax.block_until_ready(l)
        times.append(clock() - t0)
    return times


def bench_jax(step, opt, H, x, y, reps):
    p = rnn_init(jax.random.PRNGKey(0), D, H, D)
    return time_steps(step, p, opt.init(p), x, y, reps)


def flax_peer(H):
    import flax.linen as nn

    class M(nn.Module):
        @nn.compact
        def __call__(self, x):  # x [B, T, D]
            h = nn.RNN(nn.OptimizedLSTMCell(H))(x)
            return nn.Dense(D)(h)
    m = M()
    opt = optax.adam(1e-3)

    @jax.jit
    def step(p, o, x, y):
        l, g = jax.value_and_grad(lambda p: ((m.apply(p, x) - y) ** 2).mean())(p)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o, l
    return m, opt, step


def bench_flax(H, xb, yb, reps):
    m, opt, step = flax_peer(H)
    p = m.init(jax.random.PRNGKey(0), xb)
    return time_steps(step, p, opt.init(p), xb, yb, reps)


def bench_keras(H, xb, yb, reps):
    import keras
    model = keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(H, return_sequences=True),
                              keras.layers.Dense(D)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=True)
    x, y = np.asarray(xb), np.asarray(yb)
    model.train_on_batch(x, y)
    times = []
    for _ in range(reps):
        t0 = clock()
        model.train_on_batch(x, y)
        times.append(clock() - t0)
    return times


def bench_torch(H, xb, yb, reps):
    import torch
    torch.manual_seed(0)
    lstm, lin = torch.nn.LSTM(D, H, batch_first=True), torch.nn.Linear(H, D)
    dev = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    lstm, lin = lstm.to(dev), lin.to(dev)
    x = torch.from_numpy(np.array(xb)).to(dev)
    y = torch.from_numpy(np.array(yb)).to(dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(lin.parameters()), 1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        out, _ = lstm(x)
        loss = ((lin(out) - y) ** 2).mean()
        loss.backward()
        opt.step()
    step()
    sync()
    times = []
    for _ in range(reps):
        t0 = clock()
        step()
        sync()
        times.append(clock() - t0)
    return times


def agreement_with_torch(H=16):
    """Same weights in jaxdl and torch.nn.LSTM: max abs differences of outputs and grads."""
    import torch
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(D, H, batch_first=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 12, D)).astype(np.float32)
    h0 = rng.standard_normal((1, 4, H)).astype(np.float32)
    c0 = rng.standard_normal((1, 4, H)).astype(np.float32)
    xt = torch.from_numpy(x)
    out, (hT, cT) = lstm(xt, (torch.from_numpy(h0), torch.from_numpy(c0)))
    (out.square().sum() + hT.sum()).backward()
    p = LSTMParams(jnp.asarray(lstm.weight_ih_l0.detach().numpy().T),
                   jnp.asarray(lstm.weight_hh_l0.detach().numpy().T),
                   jnp.asarray((lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()))

    def f(p):
        hs, (h, c) = lstm_scan(p, jnp.swapaxes(jnp.asarray(x), 0, 1), (jnp.asarray(h0[0]), jnp.asarray(c0[0])))
        return (hs ** 2).sum() + h.sum(), hs
    (_, hs), g = jax.value_and_grad(f, has_aux=True)(p)
    return {
        "outputs": float(np.abs(np.swapaxes(np.asarray(hs), 0, 1) - out.detach().numpy()).max()),
        "grad_wx": float(np.abs(np.asarray(g.wx) - lstm.weight_ih_l0.grad.numpy().T).max()),
        "grad_wh": float(np.abs(np.asarray(g.wh) - lstm.weight_hh_l0.grad.numpy().T).max()),
        "grad_b": float(np.abs(np.asarray(g.b) - lstm.bias_ih_l0.grad.numpy()).max()),
    }


def run_peer(peer, H, reps, x_tm, y_tm):
    """Seconds per training step of one peer at hidden size H (reps timings after a warm-up)."""
    xb, yb = jnp.swapaxes(x_tm, 0, 1), jnp.swapaxes(y_tm, 0, 1)
    if peer == "jaxdl":
        return bench_jax(*jax_step_fn(lstm_scan, hoist=False), H, x_tm, y_tm, reps)
    if peer == "jaxdl_rows_left":   # jaxdl with every per-step product rows-left ([B, K] x [K, N])
        import jaxdl.models.products as products
        saved, products.WEIGHT_LEFT_MIN = products.WEIGHT_LEFT_MIN, 1 << 30
        try:   # restored for the peers after it (--in-process)
            return bench_jax(*jax_step_fn(lstm_scan, hoist=False), H, x_tm, y_tm, reps)
        finally:
            products.WEIGHT_LEFT_MIN = saved
    if peer == "jaxdl_data2":       # the B streams over two CPU devices (mesh.data=2)
        from jax.sharding import NamedSharding, PartitionSpec
        from jaxdl.run.mesh import make_mesh
        mesh = make_mesh(1, 2)
        split, rep = NamedSharding(mesh, PartitionSpec(None, "data")), NamedSharding(mesh, PartitionSpec())
        step, opt = jax_step_fn(lstm_scan, hoist=False, out_shardings=rep)
        p = jax.device_put(rnn_init(jax.random.PRNGKey(0), D, H, D), rep)
        o = jax.device_put(opt.init(p), rep)   # as the step returns it: the warm-up compiles the timed program
        return time_steps(step, p, o, jax.device_put(x_tm, split), jax.device_put(y_tm, split), reps)
    if peer == "jaxdl_hoist":
        return bench_jax(*jax_step_fn(lstm_scan, hoist=True), H, x_tm, y_tm, reps)
    if peer == "autodiff_scan":
        return bench_jax(*jax_step_fn(lstm_scan_reference), H, x_tm, y_tm, reps)
    if peer == "flax":
        return bench_flax(H, xb, yb, reps)
    if peer == "keras":
        return bench_keras(H, xb, yb, reps)
    if peer == "torch":
        return bench_torch(H, xb, yb, reps)
    raise ValueError(f"unknown peer {peer!r}")


def data(H):
    rng = np.random.default_rng(H)
    return (jnp.asarray(rng.standard_normal((T, B, D)), jnp.float32),
            jnp.asarray(rng.standard_normal((T, B, D)), jnp.float32))


def set_torch_threads():
    try:
        import torch
    except ImportError:
        return False
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count() or 1)
    return True


def pin_threads():
    """BENCH_THREADS=n (--threads): this worker runs on its first n cores only (both
    libraries' thread pools then share them), before either library starts its pool."""
    n = int(os.environ.get("BENCH_THREADS", 0))
    if n:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:n])
        os.environ["OMP_NUM_THREADS"] = str(n)


def time_in_subprocess(peer, H, reps):
    """Run one peer in a fresh interpreter (same environment) and return its timings."""
    return run_worker(os.path.abspath(__file__), "--worker", peer, "--hidden", H, "--reps", reps, "--batch", B,
                      "--clock", os.environ.get("BENCH_CLOCK", "wall"))


def main(argv=None):
    global B
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=B, help="B, the streams of a step")
    ap.add_argument("--threads", type=int, default=0,
                    help="pin each worker to this many cores (both peers; torch.set_num_threads too); "
                         "0: each library's default, all cores")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per peer (noise)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="time each step by wall time or by the process's CPU time (all threads)")
    ap.add_argument("--peers", nargs="+", default=["jaxdl", "jaxdl_hoist", "autodiff_scan", "flax", "keras", "torch"])
    ap.add_argument("--in-process", action="store_true", help="time every peer in this process")
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    B = a.batch
    if a.threads:   # inherited by the workers
        os.environ["BENCH_THREADS"] = str(a.threads)
    os.environ["BENCH_CLOCK"] = a.clock
    if "jaxdl_data2" in a.peers and a.in_process:
        ap.error("the jaxdl_data2 peer needs two CPU devices, made before JAX starts: leave out --in-process")
    if a.worker:  # child process: one peer, one size; print its timings as JSON
        if a.worker == "jaxdl_data2":   # two CPU devices, as ./launch.sh makes them for mesh.data=2
            from jaxdl.run.mesh import ask_cpu_devices
            ask_cpu_devices(1, 2)
        pin_threads()
        if a.worker.startswith("jaxdl"):   # XLA:CPU's pool as ./launch.sh sizes it (mesh.cpu_threads=0)
            from jaxdl.run.mesh import ask_cpu_threads, cpu_threads_for
            ask_cpu_threads(cpu_threads_for(0, a.hidden[0], 2 if a.worker == "jaxdl_data2" else 1, T * B),
                            explicit=False)
        set_torch_threads()
        print(json.dumps(run_peer(a.worker, a.hidden[0], a.reps, *data(a.hidden[0]))))
        return {}
    have_torch = set_torch_threads()
    mode = "all in one process" if a.in_process else "a fresh process per peer and round"
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; B={B} T={T} D={D}; "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')} "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'unset')}; "
          f"{a.rounds} rounds x {a.reps} steps each, {mode}; threads={a.threads or 'default'}; clock={a.clock}")
    results, sweep, extras = {}, {}, {}
    import importlib.util
    a.peers = [k for k in a.peers if k != "keras" or importlib.util.find_spec("keras")]
    a.peers = [k for k in a.peers if k != "torch" or have_torch]
    for H in a.hidden:
        times = {k: [] for k in a.peers}
        rounds = {k: [] for k in a.peers}
        for _ in range(a.rounds):
            for k in a.peers:
                t = run_peer(k, H, a.reps, *data(H)) if a.in_process else time_in_subprocess(k, H, a.reps)
                times[k] += t
                rounds[k].append(statistics.median(t))
        if "jaxdl" in rounds and "torch" in rounds:
            sweep[H] = statistics.median(t / j for j, t in zip(rounds["jaxdl"], rounds["torch"]))
        for k in [k for k in EXTRA_COLUMNS if k in rounds and "torch" in rounds]:
            extras.setdefault(k, {})[H] = statistics.median(t / j for j, t in zip(rounds[k], rounds["torch"]))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items() if v}
        low = {k: min(v) * 1e3 for k, v in times.items() if v}
        best = min(med.values())
        print(f"\nH={H}: ms per training step, median (ratio to the fastest median) and min")
        for k, v in sorted(med.items(), key=lambda kv: kv[1]):
            print(f"  {k:14s} {v:9.2f} ms   {v / best:5.2f}x   min {low[k]:9.2f} ms")
        results[H] = {"median_ms": med, "min_ms": low}
        if H in sweep:
            results[H]["jaxdl_speed_vs_torch"] = sweep[H]
    if sweep:
        gpu = jax.default_backend() == "gpu"
        print(f"\njaxdl's speed relative to PyTorch (PyTorch's time / jaxdl's; median of {a.rounds} round ratios), "
              f"B={B} T={T} D={D}; threads={a.threads or 'default'}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        extra = "".join(f" {k}, CPU |" for k in extras)
        print(f"| H | jaxdl ms | PyTorch ms | CPU | GPU |{extra}\n|---|---|---|---|---|{'---|' * len(extras)}")
        for H, r in sweep.items():
            m = results[H]["median_ms"]
            cpu, gpu_col = ("", f"{r:.2f}x") if gpu else (f"{r:.2f}x", "")
            col = "".join(f" {v[H]:.2f}x |" if H in v and not gpu else " |" for v in extras.values())
            print(f"| {H} | {m['jaxdl']:.1f} | {m['torch']:.1f} | {cpu} | {gpu_col} |{col}")
    if have_torch and jax.default_backend() == "cpu":
        agr = agreement_with_torch()
        print("\njaxdl vs torch.nn.LSTM, identical weights, max abs diff:", json.dumps(agr))
        assert max(agr.values()) < 1e-4, agr
        results["agreement"] = agr
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
