"""Forward + backward of one recurrent layer (GRU, Elman RNN; the LSTM beside them
for cost), B=64 T=100 D=32, H=128 and 512, loss = mean((hs - y)^2) over every step:

    custom     the hand-written VJP: the scan of jaxdl.models.gru and .lstm; for the
               Elman RNN experiments/elman_vjp.py (jaxdl's Elman scan is autodiff)
    autodiff   the same fused forward scan (same hoist, same matmuls) differentiated
               by JAX autodiff: jaxdl.models.elman's scan
    reference  autodiff of the cell's plain reference scan (a lax.scan of its step)
    torch      torch.nn.GRU / torch.nn.RNN(nonlinearity="tanh") / torch.nn.LSTM

Per round and hidden size, one fresh process times every jaxdl variant, alternating
them call by call (so a change of load on the shared machine hits them alike), then
a second fresh process does the same for the torch modules. Each call is measured
twice: wall-clock seconds and the process's CPU seconds (all its threads). Reported
per variant: the fastest wall-clock call and the median CPU time over all rounds,
and the median over rounds of its ratio to the same cell's custom VJP (same process;
torch: the adjacent process) and to the LSTM's custom VJP, both in CPU time.

--threads 1 runs XLA (its Eigen pool) and torch (its OpenMP pool) on one thread
each: then a call's CPU time is the work it does, whatever else the machine runs,
the steady measure on a shared, loaded machine. The default (0) is every core, as a
user runs them; under load its wall-clock times mostly measure the contention.

    python experiments/bench_cells.py [--hidden 128 512] [--rounds 3] [--reps 5] [--threads 0|1] [--json out.json]

--scan [CELL ...] times instead the linear cells' (LRU, minGRU) two scan forms, sequential
(lax.scan) and parallel (associative_scan), forward + backward, at (T, B, H) = (20, 32, 64),
(100, 32, 256), (784, 64, 128): what model.scan=auto picks per platform
(jaxdl.models.linear_scan.default_form).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

if "--threads" in sys.argv and sys.argv[sys.argv.index("--threads") + 1] == "1":
    # before jax is imported: XLA reads its flags once
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    os.environ["JAXDL_BENCH_THREADS"] = "1"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from fresh_process import run_worker  # noqa: E402

B, T, D = 64, 100, 32
JAX_VARIANTS = [("gru", "custom"), ("gru", "autodiff"), ("gru", "reference"), ("rnn", "custom"),
                ("rnn", "autodiff"), ("rnn", "reference"), ("lstm", "custom")]
TORCH_CELLS = ["gru", "rnn", "lstm"]


def _data(H):
    rng = np.random.default_rng(H)
    return (rng.standard_normal((T, B, D)).astype(np.float32),
            rng.standard_normal((T, B, H)).astype(np.float32))


def _run_fn(cell, variant):
    """hs = run(params, xs, h0) for one jaxdl variant."""
    from jaxdl.models import elman, gru
    from jaxdl.models.products import default_hoist
    from jaxdl.models.cell import get_cell
    hoist = default_hoist()
    carry = (lambda h0: (h0, h0)) if cell == "lstm" else (lambda h0: (h0,))
    if variant == "custom" and cell == "rnn":
        from elman_vjp import elman_scan_custom_vjp
        return lambda p, xs, h0: elman_scan_custom_vjp(p, xs, h0, None, hoist)[0]
    if variant == "custom":
        scan = get_cell(cell).scan
        return lambda p, xs, h0: scan(p, xs, carry(h0), None, hoist)[0]
    if variant == "autodiff":
        fwd = {"gru": gru._forward, "rnn": elman._forward}[cell]
        return lambda p, xs, h0: fwd(p, xs, h0, None, hoist, None)[0]
    if variant == "reference":
        ref = get_cell(cell).reference
        return lambda p, xs, h0: ref(p, xs, carry(h0))[0]
    raise ValueError(f"unknown variant {variant!r}")


def _alternate(calls: dict, reps):
    """Warm every call up, then time them in turn, reps rounds ->
    {name: [(wall seconds, CPU seconds)]}."""
    for c in calls.values():
        c()
    out = {k: [] for k in calls}
    for _ in range(reps):
        for k, c in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            c()
            out[k].append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def jax_worker(H, reps):
    from jaxdl.models.cell import get_cell
    x, y = map(jnp.asarray, _data(H))
    h0 = jnp.zeros((B, H), jnp.float32)
    calls, grads = {}, {}
    for cell, variant in JAX_VARIANTS:
        p = get_cell(cell).init(jax.random.PRNGKey(0), D, H, jnp.float32)
        run = _run_fn(cell, variant)
        g = jax.jit(jax.value_and_grad(lambda p, x, h0, y, run=run: ((run(p, x, h0) - y) ** 2).mean()))
        calls[f"{cell}/{variant}"] = (lambda g=g, p=p: jax.block_until_ready(g(p, x, h0, y)))
        grads[(cell, variant)] = g(p, x, h0, y)[1]
    for cell, variant in JAX_VARIANTS:   # every variant computes the reference's gradient
        ref = grads.get((cell, "reference"))
        if ref is not None:
            err = max(float(jnp.abs(a - b).max() / (jnp.abs(b).max() + 1e-30))
                      for a, b in zip(jax.tree.leaves(grads[(cell, variant)]), jax.tree.leaves(ref)))
            assert err < 1e-4, f"{cell}/{variant}: gradient differs from the reference's by {err:.2e}"
    return _alternate(calls, reps)


def torch_worker(H, reps):
    """{cell/torch: timings}, or {} where torch is not installed (./launch.sh bench installs it)."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(int(os.environ.get("JAXDL_BENCH_THREADS", 0)) or os.cpu_count() or 1)
    torch.manual_seed(0)
    x, y = (torch.from_numpy(a) for a in _data(H))
    calls = {}
    for cell in TORCH_CELLS:
        net = {"gru": lambda: torch.nn.GRU(D, H), "rnn": lambda: torch.nn.RNN(D, H, nonlinearity="tanh"),
               "lstm": lambda: torch.nn.LSTM(D, H)}[cell]()

        def step(net=net):
            net.zero_grad(set_to_none=True)
            out, _ = net(x)
            ((out - y) ** 2).mean().backward()
        calls[f"{cell}/torch"] = step
    return _alternate(calls, reps)


SCAN_SHAPES = [(20, 32, 64), (100, 32, 256), (784, 64, 128)]   # (T, B, H)


def scan_forms(cells, shapes, rounds: int, reps: int) -> list[dict]:
    """model.scan: forward + backward (loss over every step) of one layer of each linear
    cell in its sequential form (lax.scan) and its parallel form (associative_scan), D = 32,
    in this process, the two forms alternating call by call; per shape the median wall time
    of each and the median over rounds of parallel / sequential (each round's medians)."""
    from jaxdl.models.cell import get_cell
    rows = []
    for name in cells:
        c = get_cell(name)
        for T, Bs, H in shapes:
            rng = np.random.default_rng(H)
            xs = jnp.asarray(rng.standard_normal((T, Bs, 32)), jnp.float32)
            p = c.init(jax.random.PRNGKey(0), 32, H)
            carry = c.carry(p, Bs)
            fs = {f: jax.jit(jax.grad(lambda q, form=f: (c.scan(q, xs, carry, form=form)[0] ** 2).mean()))
                  for f in ("sequential", "parallel")}
            for f in fs.values():
                jax.block_until_ready(f(p))
            t = {f: [] for f in fs}
            ratios = []
            for _ in range(rounds):
                per = {f: [] for f in fs}
                for _ in range(reps):
                    for f, fn in fs.items():
                        t0 = time.perf_counter()
                        jax.block_until_ready(fn(p))
                        per[f].append(time.perf_counter() - t0)
                for f in fs:
                    t[f].extend(per[f])
                ratios.append(statistics.median(per["parallel"]) / statistics.median(per["sequential"]))
            row = {"cell": name, "T": T, "B": Bs, "H": H, "backend": jax.default_backend(),
                   "sequential_ms": 1e3 * statistics.median(t["sequential"]),
                   "parallel_ms": 1e3 * statistics.median(t["parallel"]),
                   "parallel_over_sequential": statistics.median(ratios)}
            rows.append(row)
            print(f"{name:8} T={T:4} B={Bs:3} H={H:4}  sequential {row['sequential_ms']:8.2f} ms  parallel "
                  f"{row['parallel_ms']:8.2f} ms  parallel/sequential {row['parallel_over_sequential']:.2f}",
                  flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", nargs="*", default=None, metavar="CELL",
                    help="time the linear cells' two scan forms instead (default cells: lru mingru)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, choices=(0, 1),
                    help="1: XLA and torch on one thread each; 0: every core")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "H", "REPS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        kind, H, reps = a.worker
        print(json.dumps((jax_worker if kind == "jax" else torch_worker)(int(H), int(reps))))
        return
    load = os.getloadavg()
    if a.scan is not None:
        rows = scan_forms(a.scan or ["lru", "mingru"], SCAN_SHAPES, a.rounds, a.reps)
        print(f"{jax.default_backend()}, load avg at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}")
        if a.json:
            a.json.write_text(json.dumps({"load": load, "scan_forms": rows}, indent=1))
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: no torch rows (./launch.sh bench installs the peers)")
    times, ratios = {}, {}
    for r in range(a.rounds):
        for H in a.hidden:
            thr = ("--threads", a.threads)
            got = run_worker(__file__, "--worker", "jax", H, a.reps, *thr)
            got.update(run_worker(__file__, "--worker", "torch", H, a.reps, *thr))
            cpu = {k: statistics.median(c for _, c in v) for k, v in got.items()}
            for k, v in got.items():
                times.setdefault((k, H), []).extend(v)
                ratios.setdefault((k, H), []).append(
                    (cpu[k] / cpu[k.split("/")[0] + "/custom"], cpu[k] / cpu["lstm/custom"]))
            print(f"round {r} H={H} CPU ms: " + "  ".join(f"{k} {1e3 * m:.1f}" for k, m in cpu.items()),
                  flush=True)
    rows = []
    for (k, H), t in times.items():
        cell, variant = k.split("/")
        rows.append({"cell": cell, "variant": variant, "H": H, "wall_fastest_ms": 1e3 * min(w for w, _ in t),
                     "cpu_median_ms": 1e3 * statistics.median(c for _, c in t),
                     "vs_custom": statistics.median(q for q, _ in ratios[(k, H)]),
                     "vs_lstm_custom": statistics.median(q for _, q in ratios[(k, H)])})
    print(f"\nB={B} T={T} D={D}, forward+backward, {jax.default_backend()}, load avg at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, at end {os.getloadavg()[0]:.2f}; "
          f"{a.rounds} rounds x {a.reps} reps, threads {a.threads or 'all'}")
    print(f"{'cell':5} {'variant':10} {'H':>4} {'wall fastest ms':>16} {'CPU median ms':>14} "
          f"{'CPU /custom':>12} {'CPU /lstm':>10}")
    for row in sorted(rows, key=lambda r: (r["H"], r["cell"], r["variant"])):
        print(f"{row['cell']:5} {row['variant']:10} {row['H']:>4} {row['wall_fastest_ms']:>16.1f} "
              f"{row['cpu_median_ms']:>14.1f} {row['vs_custom']:>12.2f} {row['vs_lstm_custom']:>10.2f}")
    if a.json:
        a.json.write_text(json.dumps({"load": load, "threads": a.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
