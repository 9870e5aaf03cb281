"""Updates per second of the online estimators against TBPTT(10, 20) on the default echo job's
shapes, in one process, interleaved rounds, the median of each as a ratio to TBPTT's.

    python experiments/bench_estimators.py [--hidden 64 128] [--methods tbptt uoro snap1 rtrl]
                                           [--rounds 5] [--length 200] [--single-thread]

Each method is the Trainer the launcher builds (tbptt_trainer with TBPTT(10, 20), or
online_trainer with estimator.every=10: one update every 10 steps for all), on echo (lag 8,
vocab 4, 32 streams, `--length` steps per stream per timed epoch), an LSTM of `--hidden`
units, Adam (lr 0.01, clip 1.0); one member, the epoch compiled once
(jax.jit(jax.vmap(train_epoch))) and not timed. In each round every method runs one epoch
in turn, so machine noise falls on all alike; the figure is the median over rounds. RTRL is
slow beyond 32 units (about 20 s per update at 64): leave it out of --methods there.
--single-thread runs XLA on one thread and times each epoch by the process's CPU time
(time.process_time), a figure that the load of other processes on a shared machine
disturbs far less than wall time (run it under `taskset -c 0` to pin the process too).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's jaxdl


def trainers(hidden: int, length: int, methods):
    from jaxdl.config.schema import EstimatorConfig, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.optimizers import optimizers
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.online_trainer import online_trainer
    from jaxdl.train.tbptt_trainer import tbptt_trainer
    task = echo(EchoConfig(lag=8, vocab=4, length=length, streams=32, test_length=10, val_length=0), 0)
    model, optim = RecurrentConfig(hidden=hidden), OptimConfig("adam", 0.01, 1.0)
    out = {}
    for m in methods:
        if m == "tbptt":
            out[m] = tbptt_trainer(task, model, optim, TBPTTConfig(10, 20), TrainConfig(), 0)
        else:
            out[m] = online_trainer(task, model, optimizers(optim), EstimatorConfig(m, 10), 0)
    return out


def measure(hidden: int, length: int, methods, rounds: int, clock=time.perf_counter) -> dict:
    """{method: median updates/s} at one size, interleaved rounds."""
    import jax

    from jaxdl.train.loop import init_members
    trs = trainers(hidden, length, methods)
    fns, states = {}, {}
    for m, tr in trs.items():
        states[m] = init_members(tr, 0, 1)
        fns[m] = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(states[m], tr.epoch_inputs(0)).compile()
        jax.block_until_ready(fns[m](states[m], tr.epoch_inputs(0)))
    times = {m: [] for m in methods}
    for _ in range(rounds):
        for m in methods:
            t0 = clock()
            jax.block_until_ready(fns[m](states[m], trs[m].epoch_inputs(0)))
            times[m].append(clock() - t0)
    return {m: trs[m].updates_per_epoch / statistics.median(times[m]) for m in methods}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--methods", nargs="+", default=["tbptt", "uoro", "snap1"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--length", type=int, default=200, help="steps per stream per timed epoch")
    ap.add_argument("--single-thread", action="store_true", help="XLA on one thread, timed by CPU time")
    a = ap.parse_args(argv)
    if a.single_thread:     # before jax starts its backend
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    if a.methods[0] != "tbptt":
        a.methods = ["tbptt"] + [m for m in a.methods if m != "tbptt"]
    res = {}
    for h in a.hidden:
        res[h] = measure(h, a.length, a.methods, a.rounds, time.process_time if a.single_thread else time.perf_counter)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {a.rounds} interleaved rounds, median; "
          f"echo, 32 streams, {a.length} steps per timed epoch, one update every 10 steps"
          + ("; one XLA thread, CPU time" if a.single_thread else "; wall time"))
    print("| hidden | method | updates/s | ratio to TBPTT(10, 20) |\n|---|---|---|---|")
    for h, ups in res.items():
        for m, u in ups.items():
            print(f"| {h} | {m} | {u:.1f} | {u / ups['tbptt']:.3f} |")
    return res


if __name__ == "__main__":
    main()
