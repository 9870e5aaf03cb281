"""Where an epoch of the default job's trainer spends its time: XLA's per-op profile.

    python experiments/profile_epoch.py [--members 1] [--top 25] [--length 2000] [--estimator uoro]

Compiles the program train_loop compiles for the echo default job (hidden 64, TBPTT(10, 20),
or --estimator uoro | snap1 | rtrl with an update every 10 steps; 32 streams;
jax.jit(jax.vmap(trainer.train_epoch)) over --members members), runs one epoch to warm up,
then one under jax.profiler.trace, reads the trace's per-thunk events (the
Perfetto JSON JAX writes) and prints the time per kind of op (products, element-wise
fusions, buffer updates and slices, copies and transposes, loop control) and the --top ops,
each with its count per epoch and its result shape from the compiled HLO. The profiler
adds a per-op cost of its own, so compare kinds and ops within one table, and epochs
only across tables of the same member count.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--length", type=int, default=2000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--estimator", default="tbptt", help="tbptt, or an online estimator (rtrl, uoro, snap1) with "
                                                          "estimator.every=10")
    a = ap.parse_args(argv)
    import jax

    from jaxdl.config.schema import EstimatorConfig, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.optimizers import optimizers
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.loop import init_members
    from jaxdl.train.online_trainer import online_trainer
    from jaxdl.train.tbptt_trainer import tbptt_trainer

    task = echo(EchoConfig(lag=8, length=a.length, streams=32, test_length=200, val_length=0), 0)
    if a.estimator == "tbptt":
        tr = tbptt_trainer(task, RecurrentConfig(hidden=a.hidden), OptimConfig(), TBPTTConfig(k1=10, k2=20),
                           TrainConfig())
    else:
        tr = online_trainer(task, RecurrentConfig(hidden=a.hidden), optimizers(OptimConfig()),
                            EstimatorConfig(a.estimator, 10))
    epoch = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None)))
    state, inputs = init_members(tr, 0, a.members), tr.epoch_inputs(0)
    shapes = {}
    for line in epoch.lower(state, inputs).compile().as_text().splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+) ", line)
        if m:
            shapes[m.group(1)] = re.sub(r"\{.*", "", m.group(2))
    state, out = epoch(state, inputs)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    state, out = epoch(state, inputs)
    jax.block_until_ready(out)
    plain = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            t0 = time.perf_counter()
            state, out = epoch(state, inputs)
            jax.block_until_ready(out)
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
    ups = tr.updates_per_epoch
    print(f"echo hidden {a.hidden}, {a.estimator}, {a.members} member(s), {ups} updates per epoch: "
          f"{plain * 1e3:.0f} ms per epoch ({ups * a.members / plain:.0f} member-updates/s), "
          f"{traced * 1e3:.0f} ms under the profiler")
    print("| kind of op | ms per epoch (profiled) | share |")
    print("|---|---|---|")
    op_total = sum(kinds.values())
    for k, t in kinds.most_common():
        print(f"| {k} | {t / 1e3:.1f} | {t / op_total:.0%} |")
    print("\n| op | ms | count per epoch | result shape |\n|---|---|---|---|")
    for n, t in total.most_common():
        if a.top <= 0:
            break
        if n.startswith("while"):
            continue
        print(f"| {n} | {t / 1e3:.1f} | {count[n]} | {shapes.get(n, '?')} |")
        a.top -= 1
    return {"ms_per_epoch": plain * 1e3, "kinds_ms": {k: t / 1e3 for k, t in kinds.items()},
            "ops": {n: (t / 1e3, count[n]) for n, t in total.items()}}


if __name__ == "__main__":
    main()
