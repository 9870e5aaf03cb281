"""The cost of the block's causal convolution (model.conv) in TBPTT training on the default
echo job's shapes: seconds per training epoch (2000 steps x 32 streams, hidden 64,
TBPTT(10, 20), one member) of the LRU default (one GLU block) and the minGRU's yaml (two GLU
blocks) without and with model.conv=4.

    python experiments/bench_block_conv.py [--rounds 5]

Every model's epoch is compiled once, then the rounds run each in turn (interleaved, so a
change of load hits them alike); each ratio is per round, then the median.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"lru": ("lru", 1, 0), "mingru conv=0": ("mingru", 2, 0), "mingru conv=4": ("mingru", 2, 4)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    from jaxdl.config.schema import OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.loop import init_members
    from jaxdl.train.tbptt_trainer import tbptt_trainer
    task = echo(EchoConfig(length=2000, test_length=10, val_length=0), 0)
    fs, states, data = {}, {}, {}
    for k, (name, layers, conv) in MODELS.items():
        model = RecurrentConfig(name=name, hidden=64, layers=layers, block="glu", conv=conv)
        tr = tbptt_trainer(task, model, OptimConfig("adam", 0.01), TBPTTConfig(10, 20), TrainConfig(), 0)
        states[k], data[k] = init_members(tr, 0, 1), tr.epoch_inputs(0)
        fs[k] = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(states[k], data[k]).compile()
    times = {k: [] for k in MODELS}
    for _ in range(a.rounds):
        for k in MODELS:
            t0 = time.perf_counter()
            jax.block_until_ready(fs[k](states[k], data[k]))
            times[k].append(time.perf_counter() - t0)
    ratio = lambda k, peer: statistics.median(x / y for x, y in zip(times[k], times[peer]))
    for k in MODELS:
        print(f"[bench] {k}: {statistics.median(times[k]):.3f} s/epoch, {ratio(k, 'lru'):.2f}x the LRU's, "
              f"{ratio(k, 'mingru conv=0'):.2f}x the minGRU's without conv", flush=True)
    print(f"[bench] load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
