"""Online learning of element-wise cells at the default echo job's shapes: updates/s and
memory of estimator=rtrl (exact; element-wise on one layer) and estimator=zucchet against
estimator=tbptt (TBPTT(10, 20)) with the same model, per model.

    python experiments/bench_elementwise.py [--models lru mingru] [--layers 1] [--conv 0] [--rounds 5] [--json out.json]

Every method's epoch (one member, 2000 steps x 32 streams, hidden 64, one GLU block per
layer; --conv K: model.conv=K inside it) is compiled once, then the rounds time every
method in turn, one epoch each (interleaved, so a change of load hits them alike);
updates/s is the median over rounds
and each ratio is per round against TBPTT in the same round, then the median. Memory per
member: XLA's own account of the compiled epoch (jax's memory_analysis: arguments + outputs
+ temporaries, the peak the program can need), and the estimator state it carries.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def trainer(method: str, model_name: str, layers: int, task, conv: int = 0):
    from jaxdl.config.schema import EstimatorConfig, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.optimizers import optimizers
    from jaxdl.train.online_trainer import online_trainer
    from jaxdl.train.tbptt_trainer import tbptt_trainer
    model = RecurrentConfig(name=model_name, hidden=64, layers=layers, block="glu", conv=conv)
    optim = OptimConfig("adam", 0.01)
    if method == "tbptt":
        return tbptt_trainer(task, model, optim, TBPTTConfig(10, 20), TrainConfig(), 0)
    return online_trainer(task, model, optimizers(optim), EstimatorConfig(method, 10), 0)


def compiled_bytes(f) -> int:
    m = f.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["lru", "mingru"])
    ap.add_argument("--methods", nargs="+", default=["tbptt", "rtrl", "zucchet"])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--conv", type=int, default=0, help="model.conv: a causal convolution of K steps in the block")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--length", type=int, default=2000)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.loop import init_members
    task = echo(EchoConfig(length=a.length, test_length=10, val_length=0), 0)
    out = {"layers": a.layers, "conv": a.conv, "rounds": a.rounds, "backend": jax.default_backend(), "models": {}}
    for model in a.models:
        fs, states, data, ups_per_epoch, mem = {}, {}, {}, {}, {}
        for m in a.methods:
            tr = trainer(m, model, a.layers, task, a.conv)
            states[m] = init_members(tr, 0, 1)
            data[m] = tr.epoch_inputs(0)
            fs[m] = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(states[m], data[m]).compile()
            ups_per_epoch[m] = tr.updates_per_epoch
            mem[m] = {"compiled_bytes": compiled_bytes(fs[m]),
                      "seq_state_bytes": int(sum(x.nbytes for x in jax.tree.leaves(states[m]["seq"])))}
        times = {m: [] for m in a.methods}
        for _ in range(a.rounds):
            for m in a.methods:
                t0 = time.perf_counter()
                jax.block_until_ready(fs[m](states[m], data[m]))
                times[m].append(time.perf_counter() - t0)
        res = {}
        for m in a.methods:
            ratio = statistics.median(times["tbptt"][i] / times[m][i] * ups_per_epoch[m] / ups_per_epoch["tbptt"]
                                      for i in range(a.rounds))
            res[m] = {"updates_per_s": ups_per_epoch[m] / statistics.median(times[m]), "ratio_to_tbptt": ratio,
                      "memory_ratio_to_tbptt": mem[m]["compiled_bytes"] / mem["tbptt"]["compiled_bytes"], **mem[m]}
            print(f"[bench] {model} {m}: {res[m]['updates_per_s']:.1f} updates/s, {ratio:.3f}x TBPTT; memory "
                  f"{mem[m]['compiled_bytes'] / 2**20:.2f} MiB ({res[m]['memory_ratio_to_tbptt']:.2f}x TBPTT)",
                  flush=True)
        out["models"][model] = res
    out["load_average"] = os.getloadavg()
    print(f"[bench] load average {out['load_average']}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
