"""Where an epoch of training spends its time: XLA's per-op profile (and PyTorch's).

    python experiments/profile_epoch.py [--members 1] [--top 25] [--length 2000] [--estimator uoro]
    python experiments/profile_epoch.py --workload textgen [--text-chars 20000] [--torch] [--peak]
    python experiments/profile_epoch.py --workload smnist [--order row|pixel] [--limit 5120]

Compiles the program train_loop compiles for the echo default job (hidden 64, TBPTT(10, 20),
or --estimator uoro | snap1 | rtrl with an update every 10 steps; 32 streams;
jax.jit(jax.vmap(trainer.train_epoch)) over --members members), runs one epoch to warm up,
then one under jax.profiler.trace, reads the trace's per-thunk events (the Perfetto JSON JAX
writes) and prints the time per kind of op (products, element-wise
fusions, buffer updates and slices, copies and transposes, loop control) and the --top ops,
each with its count per epoch and its result shape from the compiled HLO. The profiler
adds a per-op cost of its own, so compare kinds and ops within one table, and epochs
only across tables of the same member count.

--workload textgen profiles experiments/bench_tbptt_workload.py's char-LSTM instead (H=512,
TBPTT(100, 100), 32 streams, the first --text-chars characters). Every product is listed
with its shape and its achieved GFLOP/s (2 M N K flops per call over its profiled time).
--workload smnist profiles sequential MNIST at bench_smnist.py's sizes: --order row (the CPU
recipe: LSTM 128, batch 16, TBPTT(28, 28)) or pixel (LSTM 100, batch 64, full BPTT over 784 steps),
on the first --limit training images.
--torch adds torch.profiler's table of the PyTorch TBPTT loop on the same workload (self
CPU time per aten op); --peak the GFLOP/s of one large [2048, 2048] @ [2048, 2048] matmul in
each library, the ceiling the products are measured against, and of the textgen LSTM's
product shapes (PEAK_SHAPES) in each library.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's jaxdl

KINDS = (("products", ("ynn_", "dot", "xnn_", "onednn")),
         ("copies, transposes", ("copy", "transpose")),
         ("buffer updates, slices", ("dynamic-update-slice", "dynamic-slice", "slice")),
         ("concatenates", ("concatenate",)),
         ("loop control", ("while", "wrapped_add", "compare")))


def kind_of(name: str) -> str:
    for kind, marks in KINDS:
        if any(m in name for m in marks):
            return kind
    return "element-wise fusions, other"


DOT = re.compile(r"\s*(?:ROOT )?%(\S+) = f32\[([\d,]*)\]\S* dot\(%(\S+), %(\S+)\),.*lhs_contracting_dims=\{([\d,]*)\}")
DEF = re.compile(r"\s*(?:ROOT )?%(\S+) = \w+\[([\d,]*)\]")


def dot_shapes(hlo: str) -> dict:
    """{op name: (flops per call, "[lhs] x [rhs]")} for every f32 dot of compiled HLO text,
    and for every fusion whose computation holds one (XLA:CPU wraps products in fusions
    that YNNPACK, XNNPACK or oneDNN run: the profile names the fusion)."""
    dims = lambda t: [int(d) for d in t.split(",") if d]
    dots, comp, calls, shape = {}, None, {}, {}
    for line in hlo.splitlines():
        d = DEF.match(line)
        if d:
            shape[d.group(1)] = d.group(2)
        c = re.match(r"%(\S+) \(.*\{$", line)
        if c:
            comp = c.group(1)
        f = re.search(r"^\s*(?:ROOT )?%(\S+) = .* fusion\(.*calls=%([^,\s]+)", line)
        if f:
            calls[f.group(1)] = f.group(2)
        m = DOT.match(line)
        if not m:
            continue
        name, res, a, b, contract = m.groups()
        lhs, rhs = shape.get(a, ""), shape.get(b, "")
        k = 1
        for d in dims(contract):
            k *= dims(lhs)[d]
        n = 1
        for d in dims(res):
            n *= d
        dots[name] = (2 * n * k, f"[{lhs}] x [{rhs}]")
        if comp is not None:
            dots.setdefault("%" + comp, dots[name])
    out = {n: v for n, v in dots.items() if not n.startswith("%")}
    out.update({f: dots["%" + c] for f, c in calls.items() if "%" + c in dots})
    return out


def jaxdl_epoch(a):
    """(epoch(state) -> state, initial state, compiled HLO text, updates, label) of the workload."""
    import jax
    if a.workload == "textgen":
        from bench_tbptt_workload import jaxdl_setup
        run, state, batches, _, ups, source = jaxdl_setup("textgen", 0, 1, a.text_chars, "float32", None)
        hlo = run.lower(*state, batches).compile().as_text()

        def epoch(st):
            p, o, s, out = run(*st, batches)
            jax.block_until_ready(out)
            return p, o, s
        return epoch, state, hlo, ups, f"textgen (H=512, TBPTT(100, 100), B=32, {a.text_chars} chars of {source})"
    from jaxdl.config.schema import EstimatorConfig, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.optimizers import optimizers
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.loop import init_members
    from jaxdl.train.online_trainer import online_trainer
    from jaxdl.train.tbptt_trainer import tbptt_trainer

    if a.workload == "smnist":    # bench_smnist.py's sizes: row = the CPU recipe (smnist_row_cpu.yaml)
        from bench_smnist import SIZES
        from jaxdl.tasks.smnist import SmnistConfig, smnist
        s, T = SIZES[a.order], 28 if a.order == "row" else 784
        task = smnist(SmnistConfig(order=a.order, batch=s["batch"], limit=a.limit), 0,
                      os.environ.get("JAXDL_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
        tr = tbptt_trainer(task, RecurrentConfig(hidden=s["hidden"]), OptimConfig("adam", s["lr"], s["clip"]),
                           TBPTTConfig(k1=T, k2=T), TrainConfig())
    elif a.estimator == "tbptt":
        task = echo(EchoConfig(lag=8, length=a.length, streams=32, test_length=200, val_length=0), 0)
        tr = tbptt_trainer(task, RecurrentConfig(hidden=a.hidden), OptimConfig(), TBPTTConfig(k1=10, k2=20),
                           TrainConfig())
    else:
        task = echo(EchoConfig(lag=8, length=a.length, streams=32, test_length=200, val_length=0), 0)
        tr = online_trainer(task, RecurrentConfig(hidden=a.hidden), optimizers(OptimConfig()),
                            EstimatorConfig(a.estimator, 10))
    run = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None)))
    state, inputs = init_members(tr, 0, a.members), tr.epoch_inputs(0)
    hlo = run.lower(state, inputs).compile().as_text()

    def epoch(st):
        st, out = run(st, inputs)
        jax.block_until_ready(out)
        return st
    return (epoch, state, hlo, tr.updates_per_epoch * a.members,
            f"{a.workload}{f' {a.order} order' if a.workload == 'smnist' else ''} {a.estimator}, "
            f"{a.members} member(s)")


def torch_profile(a, top):
    """torch.profiler over one epoch of the PyTorch TBPTT loop (after one warm-up epoch):
    self CPU ms per aten op, with its input shapes."""
    import torch
    from bench_tbptt_workload import torch_epoch, torch_setup
    (lstm, lin, opt), (x, y, w), _, cfg, _, _ = torch_setup(a.workload, 0, a.text_chars)
    torch_epoch(lstm, lin, opt, x, y, w, cfg["k1"], cfg["k2"])
    t0 = time.perf_counter()
    torch_epoch(lstm, lin, opt, x, y, w, cfg["k1"], cfg["k2"])
    plain = time.perf_counter() - t0
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        torch_epoch(lstm, lin, opt, x, y, w, cfg["k1"], cfg["k2"])
    ev = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in ev)
    print(f"\nPyTorch ({torch.get_num_threads()} threads): {plain * 1e3:.0f} ms per epoch unprofiled; "
          f"self CPU time under the profiler {total / 1e3:.0f} ms")
    print("| aten op | self CPU ms | share | calls | input shapes |\n|---|---|---|---|---|")
    for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:top]:
        shapes = ", ".join(str(s) for s in e.input_shapes if s)[:90]
        print(f"| {e.key} | {e.self_cpu_time_total / 1e3:.1f} | {e.self_cpu_time_total / total:.0%} | {e.count} "
              f"| {shapes} |")
    return {"ms_per_epoch": plain * 1e3}


PEAK_SHAPES = ((2048, 2048, 2048, "a large square product"),
               (571, 3200, 2048, "H=512 weight gradients, [x, h_{t-1}, 1]^T dz over T*B = 3200 rows"),
               (2048, 512, 32, "H=512 forward per step, weight-left Wh^T h^T"),
               (512, 2048, 32, "H=512 backward per step, weight-left Wh dz^T"),
               (32, 512, 2048, "H=512 forward per step, rows-left h Wh"))


def peak() -> dict:
    """GFLOP/s of float32 [M, K] @ [K, N] products in JAX (XLA:CPU) and PyTorch, each on the
    threads this process may use: the large square product (the ceiling) and the shapes of
    the textgen LSTM's products. CPU time of the process, the best of 3 rounds of repeated
    calls (about 2e10 flops a round), the two libraries alternating."""
    import os

    import jax
    import jax.numpy as jnp
    import numpy as np
    try:
        import torch
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    except ImportError:
        torch = None
    f = jax.jit(lambda a, b: a @ b)
    res = {}
    print("\n| [M, K] @ [K, N] | what | JAX GFLOP/s | PyTorch GFLOP/s |\n|---|---|---|---|")
    for M, K, N, what in PEAK_SHAPES:
        a = np.random.default_rng(0).standard_normal((M, K), np.float32)
        b = np.random.default_rng(1).standard_normal((K, N), np.float32)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        f(ja, jb).block_until_ready()
        reps = max(3, int(2e10 / (2 * M * K * N)))
        best = {}
        for _ in range(3):
            t0 = time.process_time()
            for _ in range(reps):
                out = f(ja, jb)
            out.block_until_ready()
            best["jax"] = min(best.get("jax", 1e9), (time.process_time() - t0) / reps)
            if torch is not None:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                t0 = time.process_time()
                for _ in range(reps):
                    torch.mm(ta, tb)
                best["torch"] = min(best.get("torch", 1e9), (time.process_time() - t0) / reps)
        g = {k: 2 * M * K * N / v / 1e9 for k, v in best.items()}
        res[f"{M}x{K}x{N}"] = g
        print(f"| [{M}, {K}] @ [{K}, {N}] | {what} | {g['jax']:.0f} | {g.get('torch', float('nan')):.0f} |")
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--length", type=int, default=2000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--workload", default="echo", choices=["echo", "textgen", "smnist"])
    ap.add_argument("--estimator", default="tbptt", help="echo: tbptt, or an online estimator (rtrl, uoro, snap1) "
                                                          "with estimator.every=10")
    ap.add_argument("--text-chars", type=int, default=20_000, help="textgen: characters of text")
    ap.add_argument("--limit", type=int, default=5120, help="smnist: training images (a batch per update)")
    ap.add_argument("--order", default=None, choices=["row", "pixel"],
                    help="smnist: row (LSTM 128, batch 16, 28 steps) or pixel (LSTM 100, batch 64, 784 steps)")
    ap.add_argument("--torch", action="store_true", help="also profile the PyTorch TBPTT loop (torch.profiler)")
    ap.add_argument("--peak", action="store_true", help="also measure one large matmul in each library")
    a = ap.parse_args(argv)
    if a.order and a.workload != "smnist":
        ap.error(f"--order is sequential MNIST's (--workload smnist), not {a.workload}'s: drop it")
    a.order = a.order or "row"
    if a.torch and a.workload == "smnist":   # refused before any compute
        ap.error("--torch profiles the PyTorch TBPTT loop of bench_tbptt_workload.py (echo, textgen); "
                 "smnist's PyTorch peer is experiments/bench_smnist.py: drop --torch or pick --workload textgen")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax

    epoch, state, hlo, ups, label = jaxdl_epoch(a)
    shapes = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+) ", line)
        if m:
            shapes[m.group(1)] = re.sub(r"\{.*", "", m.group(2))
    dots = dot_shapes(hlo)
    state = epoch(state)
    t0 = time.perf_counter()
    state = epoch(state)
    plain = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            t0 = time.perf_counter()
            state = epoch(state)
            traced = time.perf_counter() - t0
        trace = json.load(gzip.open(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[0]))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and not name.startswith(("$", "ThunkExecutor", "SlinkyThreadPool", "end: ")):
            total[name] += e.get("dur", 0)
            count[name] += 1
    # a while op's time holds its body's ops: loop control counts the loops' own time only
    body = sum(t for n, t in total.items() if not n.startswith("while"))
    loops = sum(t for n, t in total.items() if n.startswith("while"))
    kinds = collections.Counter()
    for n, t in total.items():
        if not n.startswith("while"):
            kinds[kind_of(n)] += t
    kinds["loop control"] += max(loops - body, 0)
    print(f"{label}, {ups} (member-)updates per epoch: {plain * 1e3:.0f} ms per epoch "
          f"({ups / plain:.1f} member-updates/s), {traced * 1e3:.0f} ms under the profiler; "
          f"jax {jax.__version__}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| kind of op | ms per epoch (profiled) | share |")
    print("|---|---|---|")
    op_total = sum(kinds.values())
    for k, t in kinds.most_common():
        print(f"| {k} | {t / 1e3:.1f} | {t / op_total:.0%} |")
    if dots:
        print("\n| product | operands | calls per epoch | ms | GFLOP/s |\n|---|---|---|---|---|")
        for n, t in sorted(((n, total[n]) for n in dots if n in total), key=lambda nt: -nt[1]):
            flops, ops = dots[n]
            print(f"| {n} | {ops} | {count[n]} | {t / 1e3:.1f} | {flops * count[n] / (t * 1e3):.1f} |")
    print("\n| op | ms | count per epoch | result shape |\n|---|---|---|---|")
    for n, t in total.most_common():
        if a.top <= 0:
            break
        if n.startswith("while"):
            continue
        print(f"| {n} | {t / 1e3:.1f} | {count[n]} | {shapes.get(n, '?')} |")
        a.top -= 1
    res = {"ms_per_epoch": plain * 1e3, "kinds_ms": {k: t / 1e3 for k, t in kinds.items()},
           "ops": {n: (t / 1e3, count[n]) for n, t in total.items()}}
    if a.torch:
        res["torch"] = torch_profile(a, 15)
    if a.peak:
        res["peak"] = peak()
    return res


if __name__ == "__main__":
    main()
