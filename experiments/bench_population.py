"""Member-updates per second of a population against one member, in one process.

    python experiments/bench_population.py [--members 1,16] [--rounds 3] [--length 2000] [--devices 2]

The default job's trainer (echo, LSTM hidden 64, TBPTT(10, 20), 32 streams) compiled as
train_loop compiles it (jax.jit of jax.vmap(trainer.train_epoch)) once per member count;
then the counts interleave, round after round, each training the same member-updates per
round (one member 16 epochs, 16 members one), so a loaded machine's drift hits them alike.
Prints each count's median member-updates/s, its rounds, and the median over the rounds of
its ratio to the first count in that round (the issue's target: 16 members >= 1.0x one
member)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's jaxdl


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", default="1,16", help="member counts; ratios are to the first")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--length", type=int, default=2000, help="steps per stream (updates per epoch = length/10)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--devices", type=int, default=1,
                    help="CPU devices (jax_num_cpu_devices): a count divisible by them puts its members "
                         "on a mesh of (devices x 1), as mesh.replica=devices does; 1 member stays on one")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    import jax
    if a.devices > 1:
        jax.config.update("jax_num_cpu_devices", a.devices)

    from jaxdl.config.schema import OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.run.mesh import Placement, make_mesh
    from jaxdl.train.loop import init_members
    from jaxdl.train.tbptt_trainer import tbptt_trainer

    task = echo(EchoConfig(lag=8, length=a.length, streams=32, test_length=200, val_length=0), 0)
    tr = tbptt_trainer(task, RecurrentConfig(hidden=a.hidden), OptimConfig(), TBPTTConfig(k1=10, k2=20),
                       TrainConfig())
    counts = [int(m) for m in a.members.split(",")]
    epoch_fn = jax.vmap(tr.train_epoch, in_axes=(0, None))
    inputs = tr.epoch_inputs(0)
    states, epochs, placed, layout = {}, {}, {}, {}
    for m in counts:                                   # compile and warm up each count
        if a.devices > 1 and m > 1 and m % a.devices == 0:   # as train_loop places a mesh.replica run
            pl = Placement(make_mesh(a.devices, 1))
            epochs[m], s = pl.jit_epoch(epoch_fn), pl.state(init_members(tr, 0, m))
            placed[m] = pl.inputs(inputs, tr.data_axes)
            layout[m] = f"{a.devices} devices x {m // a.devices} members"
        else:
            epochs[m], s, placed[m], layout[m] = jax.jit(epoch_fn), init_members(tr, 0, m), inputs, "1 device"
        s, out = epochs[m](s, placed[m])
        jax.block_until_ready(out)
        states[m] = s
    rates = {m: [] for m in counts}
    top = max(counts)
    for _ in range(a.rounds):
        for m in counts:      # every count trains the same member-updates per round (top / m epochs)
            reps = -(-top // m)
            t0 = time.perf_counter()
            for _ in range(reps):
                states[m], out = epochs[m](states[m], placed[m])
            jax.block_until_ready(out)
            rates[m].append(tr.updates_per_epoch * m * reps / (time.perf_counter() - t0))
    med = {m: float(np.median(v)) for m, v in rates.items()}
    # each round's ratio: both counts ran back to back, under the same load
    ratio = {m: float(np.median([r / r0 for r, r0 in zip(rates[m], rates[counts[0]])])) for m in counts}
    print(f"population efficiency, echo hidden {a.hidden}, {tr.updates_per_epoch} updates per epoch, "
          f"{a.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| members | layout | member-updates/s (median) | rounds | per member vs first (median of round ratios) |")
    print("|---|---|---|---|---|")
    for m in counts:
        print(f"| {m} | {layout[m]} | {med[m]:.1f} | {' '.join(f'{r:.0f}' for r in rates[m])} | {ratio[m]:.2f}x |")
    res = {"median": med, "rounds": rates, "ratio": ratio}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
