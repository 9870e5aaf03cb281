"""The online-learning study (issue 25, item 6): recurrent cells of today and of before (LSTM,
GRU, LRU, minGRU) x gradient estimators (TBPTT at two windows, full BPTT, exact RTRL, the rule
of Zucchet et al. 2023, SnAp-1, UORO) on the copy task and on echo with a lag beyond the
truncation; per pair: test accuracy over seeds, the cosine of its gradient with the exact one
at parameter snapshots, updates/s and memory. Writes results.md and results.json.

    ./launch.sh py experiments/online/study.py                        # the full study (slow test)
    ./launch.sh py experiments/online/study.py --smoke --out /tmp/o   # tiny sizes (the CI test)

Methods (names in results.json):
  tbptt_<k1>_<k2>  TBPTT(k1, k2) (jaxdl.train.tbptt): echo k2 = L/2 and 2L with k1 = 10; copy
                   k1 = k2 below the pattern-to-output span (two windows) and k1 = k2 = T
                   (full BPTT over the whole sequence: the exact gradient)
  rtrl             exact RTRL (element-wise on one element-wise layer, the dense n x p form
                   otherwise), an update every `every` steps (echo 10; copy T: one per sequence)
  zucchet          Zucchet et al. 2023's rule: exact within each element-wise layer, the loss
                   gradient passed down the stack at the same step only
  snap1, uoro      SnAp-1, UORO (jaxdl.estimators)
A pair the code refuses (zucchet on a dense cell, snap1 on a block) is a row "n/a" with the
refusal's own message; nothing is special-cased here. Every pair shares the model, optimizer
(Adam, one learning rate, no tuning), seeds and data of its task; seeds are members of one
vmapped program. Gradient quality: at snapshots of the parameters along the full-BPTT /
long-window run (seed 0), each method's gradient of one loss window on a test batch (copy: the
whole sequence; echo: the last `every` steps of a prefix, influence carried from step 0)
against BPTT through everything before it (exact). Updates/s: one member's compiled epoch
(median of `repeats` calls, compile excluded), ratio to the cell's first TBPTT row in the same
task. Memory: XLA's account of that compiled epoch (arguments + outputs + temporaries) and the
state a member carries between updates (the influence for the online ones).
Nothing is selected on test data: every setting is fixed here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from estimators.study import _state_bytes, fmt, stats  # noqa: E402

CELLS = {   # the study's model per cell: LSTM and GRU one layer; LRU and minGRU two GLU blocks (their yaml's block)
    "lstm": {"layers": 1, "block": "none"},
    "gru": {"layers": 1, "block": "none"},
    "lru": {"layers": 2, "block": "glu", "r_min": 0.4, "r_max": 0.99, "max_phase": 6.283},
    "mingru": {"layers": 2, "block": "glu"},
}
# RTRL on a stack of two element-wise blocks is the dense form (jaxdl/estimators/rtrl.py): n x p influence and
# O(n^2 p) per step with n = 8H state numbers (each block's y and its cell's carry), beyond this study's CPU budget;
# the exact gradient of those stacks is full BPTT's (the cosine's reference), and their online row is the Zucchet rule.
TOO_COSTLY = {("lru", "rtrl"), ("mingru", "rtrl")}
TOO_COSTLY_WHY = ("not run: dense RTRL on two element-wise blocks costs O(n^2 p) per step (n = 8H); "
                  "exact gradient = full BPTT")
ONLINE = ("rtrl", "zucchet", "snap1", "uoro")

FULL = {
    "seeds": 3, "lr": 0.01, "hidden": 16, "cells": list(CELLS), "repeats": 1, "snapshots": 2,
    "copy": {"task": {"pattern": 5, "bits": 3, "delay": 8, "train_size": 1000, "val_size": 0, "test_size": 200,
                      "batch": 20},
             "epochs": 6, "windows": [4, 7]},
    "echo": {"task": {"lag": 8, "vocab": 4, "length": 800, "streams": 8, "test_length": 500, "val_length": 0},
             "epochs": 6, "every": 10, "prefix": 100, "k2": [4, 16]},
}

SMOKE = {
    "seeds": 2, "lr": 0.01, "hidden": 4, "cells": ["mingru"], "repeats": 1, "snapshots": 1,
    "copy": {"task": {"pattern": 2, "bits": 2, "delay": 2, "train_size": 8, "val_size": 0, "test_size": 4,
                      "batch": 4},
             "epochs": 1, "windows": []},
    "echo": {"task": {"lag": 4, "vocab": 2, "length": 20, "streams": 2, "test_length": 20, "val_length": 0},
             "epochs": 1, "every": 10, "prefix": 20, "k2": [8]},
    "methods": ["tbptt", "zucchet"], "max_layers": 1,
}


def model_config(cell: str, sz: dict):
    """The row's model: CELLS[cell], its layers capped at sz["max_layers"] where given (smoke)."""
    from jaxdl.config.schema import RecurrentConfig
    c = dict(CELLS[cell])
    c["layers"] = min(c["layers"], sz.get("max_layers", c["layers"]))
    return RecurrentConfig(name=cell, hidden=sz["hidden"], **c)


def make_task(kind: str, sz: dict):
    if kind == "copy":
        from jaxdl.tasks.copytask import CopyConfig, copy
        return copy(CopyConfig(**sz["copy"]["task"]), 0)
    from jaxdl.tasks.synthetic import EchoConfig, echo
    return echo(EchoConfig(**sz["echo"]["task"]), 0)


def method_plan(kind: str, sz: dict, T: int) -> list[tuple[str, dict]]:
    """(name, settings) per row: TBPTT rows {"k1", "k2"}, online rows {"every"}."""
    if kind == "copy":
        rows = [(f"tbptt_{k}_{k}", {"k1": k, "k2": k}) for k in sz["copy"]["windows"]]
        rows.append((f"tbptt_{T}_{T}", {"k1": T, "k2": T}))
        every = T
    else:
        every = sz["echo"]["every"]
        rows = [(f"tbptt_{every}_{k2}", {"k1": every, "k2": k2}) for k2 in sz["echo"]["k2"]]
    rows += [(m, {"every": every}) for m in ONLINE]
    keep = sz.get("methods")
    return [r for r in rows if keep is None or r[0].split("_")[0] in keep]


def trainer_for(method: str, cfg: dict, task, cell: str, sz: dict):
    """The Trainer of a row; a ValueError is the code's refusal of the pair."""
    from jaxdl.config.schema import EstimatorConfig, OptimConfig, TBPTTConfig, TrainConfig
    from jaxdl.optimizers import optimizers
    from jaxdl.train.online_trainer import online_trainer
    from jaxdl.train.tbptt_trainer import tbptt_trainer
    model, optim = model_config(cell, sz), OptimConfig("adam", sz["lr"], 1.0)
    if method.startswith("tbptt"):
        return tbptt_trainer(task, model, optim, TBPTTConfig(cfg["k1"], cfg["k2"]), TrainConfig(), 0)
    return online_trainer(task, model, optimizers(optim), EstimatorConfig(method, cfg["every"]), 0)


def label(method: str, T: int | None = None) -> str:
    if method.startswith("tbptt"):
        k1, k2 = method.split("_")[1:]
        return "full BPTT" if T is not None and int(k2) == T else f"TBPTT({k1}, {k2})"
    return {"rtrl": "RTRL (exact)", "zucchet": "Zucchet rule", "snap1": "SnAp-1", "uoro": "UORO"}[method]


# --------------------------------------------------------------------------- gradients of one loss window

def _window(task, sz: dict, kind: str):
    """(probe batch [T, B, ...], lo, hi): the loss window [lo, hi) whose gradient is compared."""
    probe = jax.tree.map(lambda a: jnp.asarray(a[0]), task.test)
    if kind == "copy":
        T = probe.mask.shape[0]
        return probe, 0, T
    prefix = sz["echo"]["prefix"]
    return jax.tree.map(lambda a: a[:prefix], probe), prefix - sz["echo"]["every"], prefix


def _loss_fn(task, model):
    """loss(params, batch, carry, lo, hi, start): the summed weighted loss of steps [lo, hi) of
    batch[start:], from `carry` at step start (BPTT through all of it)."""
    from jaxdl.objectives import get_objective
    from jaxdl.train.tbptt_trainer import stream_apply
    apply_fn, obj = stream_apply(task, model), get_objective(task.loss)

    def loss(p, b, c, lo, hi, start):
        preds, _ = apply_fn(p, b.x[start:hi], c, b.mask[start:hi])
        t = jnp.arange(start, hi)
        w = b.weight[start:hi] * (t >= lo)[:, None]
        return (obj(preds, b.y[start:hi])["loss"] * w).sum()
    return apply_fn, loss


def exact_grad(task, model, params, b, lo, hi):
    """BPTT through every step before hi from a zero state: the exact gradient."""
    from jaxdl.models.rnn import rnn_carry
    _, loss = _loss_fn(task, model)
    return jax.grad(loss)(params, b, rnn_carry(params, b.mask.shape[1]), lo, hi, 0)


def tbptt_grad(task, model, params, b, lo, hi, k1, k2):
    """TBPTT(k1, k2)'s gradient of the window [lo, hi) at fixed params, as the engine computes it
    (jaxdl.train.tbptt.window_loss): update u counts the loss of its k1 new steps [lo + u k1, ..);
    for k1 <= k2 it backpropagates through its last k2 steps (the state before them a constant),
    for k1 > k2 through the k2-step chunk each step is in. Summed over the window's updates."""
    from jaxdl.models.rnn import rnn_carry
    apply_fn, loss = _loss_fn(task, model)
    B = b.mask.shape[1]
    total = None
    for first in range(lo, hi, k1):
        e = min(first + k1, hi)
        segs = ([(max(first - max(k2 - k1, 0), 0), first, e)] if k1 <= k2 else
                [(c, c, min(c + k2, e)) for c in range(first, e, k2)])
        for s, f, t in segs:
            c = rnn_carry(params, B)
            if s > 0:
                _, c = apply_fn(params, b.x[:s], c, b.mask[:s])
            c = jax.lax.stop_gradient(c)
            g = jax.grad(lambda p: loss(p, b, c, f, t, s))(params)
            total = g if total is None else jax.tree.map(jnp.add, total, g)
    return total


def online_grad(task, name, params, b, lo, hi, key):
    """Estimator `name`'s gradient of the window: its state and influence carried from step 0."""
    from jaxdl.estimators import get_estimator
    from jaxdl.models.rnn import rnn_carry
    from jaxdl.objectives import get_objective
    est = get_estimator(name, get_objective(task.loss))
    B = b.mask.shape[1]
    x = jax.nn.one_hot(b.x, task.in_dim) if task.token_inputs else b.x

    def body(c, inp):
        carry, st = c
        xt, yt, wt, mt, t = inp
        carry, st, g, _ = est.step(params, carry, st, xt, yt, wt * (t >= lo), mt)
        return (carry, st), g
    _, gs = jax.lax.scan(body, (rnn_carry(params, B), est.init(params, B, key)),
                         (x[:hi], b.y[:hi], b.weight[:hi], b.mask[:hi], jnp.arange(hi)))
    return jax.tree.map(lambda a: a.sum(0), gs)


def _flat(tree) -> jnp.ndarray:
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def cosine(g, ref) -> float:
    g, ref = _flat(g), _flat(ref)
    return float(jnp.dot(g, ref) / (jnp.linalg.norm(g) * jnp.linalg.norm(ref) + 1e-30))


def quality(task, kind, cell, sz, rows, snaps) -> dict:
    """Cosine of every row's gradient with the exact one at each snapshot of the params."""
    model = model_config(cell, sz)
    b, lo, hi = _window(task, sz, kind)
    out = {}
    ex = jax.jit(lambda p: exact_grad(task, model, p, b, lo, hi))
    fns = {}
    for name, cfg in rows:
        if name.startswith("tbptt"):
            fns[name] = jax.jit(lambda p, k1=cfg["k1"], k2=cfg["k2"]: tbptt_grad(task, model, p, b, lo, hi, k1, k2))
        else:
            fns[name] = jax.jit(lambda p, n=name: online_grad(task, n, p, b, lo, hi, jax.random.PRNGKey(7)))
    exacts = [ex(p) for p in snaps]
    for name, f in fns.items():
        try:
            out[name] = [cosine(f(p), e) for p, e in zip(snaps, exacts)]
        except ValueError as err:        # the pair is refused: reported with the training row
            out[name] = str(err).split("\n")[0]
    return out


# --------------------------------------------------------------------------- training, cost

def compiled_cost(tr, repeats: int) -> dict:
    """One member's compiled epoch: updates/s (median of `repeats` calls), XLA's memory account,
    and the bytes of the state carried between updates."""
    from jaxdl.train.loop import init_members
    state = init_members(tr, 0, 1)
    data = tr.epoch_inputs(0)
    f = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(state, data).compile()
    m = f.memory_analysis()
    xla = int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) if m is not None else None
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(state, data))
        ts.append(time.perf_counter() - t0)
    return {"updates_per_s": tr.updates_per_epoch / float(np.median(ts)), "xla_bytes": xla,
            "carried_bytes": _state_bytes(state["seq"])}


def run_pair(task, kind, cell, name, cfg, sz, snap_epochs) -> dict:
    """Train one row over the seeds; the params of seed 0 at `snap_epochs` (epoch counts) come
    back when asked (the reference row)."""
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, init_members, train_loop
    if (cell, name) in TOO_COSTLY and model_config(cell, sz).layers > 1:
        return {"method": name, "na": TOO_COSTLY_WHY}
    try:
        tr = trainer_for(name, cfg, task, cell, sz)
        jax.eval_shape(lambda: init_members(tr, 0, 1))      # an estimator refuses a cell at its init
    except ValueError as err:
        return {"method": name, "na": str(err).split("\n")[0]}
    t0 = time.perf_counter()
    snaps, state, done = [], None, 0
    for stop in sorted(set(snap_epochs) | {sz[kind]["epochs"]}):
        if stop == 0:
            state = init_members(tr, 0, sz["seeds"])
        elif stop > done:
            res = train_loop(tr, MemoryRecorder(), LoopPlan(stop - done, members=sz["seeds"], eval_every=stop - done),
                             state=state)
            state, done = res.state, stop
        if stop in snap_epochs:
            snaps.append(jax.tree.map(lambda a: a[0], state["params"]))
    wall = time.perf_counter() - t0
    acc = res.per_member["test/accuracy"]
    out = {"method": name, "settings": cfg, "test": stats(acc), "wall_s": wall,
           "updates": tr.updates_per_epoch * sz[kind]["epochs"], "cost": compiled_cost(tr, sz["repeats"]),
           "load_average": [round(x, 1) for x in os.getloadavg()]}
    print(f"[online] {kind} {cell} {name}: test accuracy {fmt(out['test'])}, "
          f"{out['cost']['updates_per_s']:.0f} updates/s ({wall:.0f} s)", flush=True)
    return out, snaps


def part(kind: str, sz: dict) -> dict:
    task = make_task(kind, sz)
    T = task.train.mask.shape[1]
    rows = method_plan(kind, sz, T)
    ref = [n for n, _ in rows if n.startswith("tbptt")][-1]       # full BPTT (copy) / the longest window (echo)
    E, S = sz[kind]["epochs"], sz["snapshots"]
    snap_epochs = sorted({round(i * E / max(S - 1, 1)) for i in range(S)}) if S > 1 else [E]
    cells = {}
    for cell in sz["cells"]:
        res, snaps = [], None
        for name, cfg in rows:
            r = run_pair(task, kind, cell, name, cfg, sz, snap_epochs if name == ref else [])
            if isinstance(r, tuple):
                r, s = r
                if name == ref:
                    snaps = s
            else:
                print(f"[online] {kind} {cell} {name}: n/a ({r['na']})", flush=True)
            res.append(r)
        q = quality(task, kind, cell, sz, [(n, c) for n, c in rows if not any(r["method"] == n and "na" in r
                                                                            for r in res)], snaps)
        for r in res:
            if "na" not in r:
                r["cosine"] = q[r["method"]]
        cells[cell] = res
    chance = task.chance if hasattr(task, "chance") else None
    return {"cells": cells, "T": T, "reference_run": ref, "snapshot_epochs": snap_epochs,
            "chance": chance, "settings": sz[kind]}


# --------------------------------------------------------------------------- report

PUBLISHED = """Zucchet et al. 2023 ("Online learning of long-range dependencies", NeurIPS), Table 1: the copy
task at pattern 20 x 7 bits, delay 7 (48 steps), 20,000 sequences in batches of 50, 25 epochs,
AdamW with cosine decay, the best of a learning-rate grid 0.001-0.032, 3 seeds (their
`experiments/table1_*.yaml`): a 4-layer LRU network (GLU blocks, 64 units, model width 128)
trained by BPTT, their online rule (`online_full`), 1-step truncation (`online_1truncated`) and
spatial backprop only (`online_spatial`); GRU networks (1 layer of 134 units; 4 layers of 91)
by BPTT, 1-step truncation, spatial and SnAp-1 (`online_snap1`); a 4-layer linear RNN. Their
figures are not reproduced here: the paper's table could not be read from this machine (only
its code and settings could), so this study's rows stand beside their settings, not their
numbers; README.md sets them beside the paper's stated claim."""


def tables(res: dict, sz: dict) -> str:
    lines = [f"# Online learning study: results ({res['mode']})", "", f"Settings: `{json.dumps(sz)}`", ""]
    for kind in ("copy", "echo"):
        if kind not in res:
            continue
        p = res[kind]
        T = p["T"] if kind == "copy" else None
        what = (f"copy task, pattern {p['settings']['task']['pattern']} x {p['settings']['task']['bits']} bits, "
                f"delay {p['settings']['task']['delay']} (T = {p['T']}; span pattern to output "
                f"{p['settings']['task']['pattern'] + p['settings']['task']['delay'] + 1}), bit accuracy, chance 0.5"
                if kind == "copy" else
                f"echo, lag {p['settings']['task']['lag']}, vocab {p['settings']['task']['vocab']}, accuracy, "
                f"chance {1 / p['settings']['task']['vocab']:.2f}")
        lines += [f"## {what}", "",
                  f"Test accuracy (mean ± std over {sz['seeds']} seeds, {p['settings']['epochs']} epochs); cosine "
                  f"with the exact gradient at the snapshots after epochs {p['snapshot_epochs']} of the "
                  f"{label(p['reference_run'], T)} run; updates/s of one member (ratio to the cell's first row); "
                  "memory: XLA's account of one member's compiled epoch / the state carried between updates.", "",
                  "| cell | method | test accuracy | cosine at snapshots | updates/s | ratio | XLA memory | carried |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
        for cell, rows in p["cells"].items():
            base = next((r["cost"]["updates_per_s"] for r in rows if "na" not in r), None)
            for r in rows:
                if "na" in r:
                    lines.append(f"| {cell} | {label(r['method'], T)} | n/a: {r['na']} | | | | | |")
                    continue
                cs = r["cosine"]
                cstr = ", ".join(f"{c:.2f}" for c in cs) if isinstance(cs, list) else cs
                c = r["cost"]
                xla = f"{c['xla_bytes'] / 2**20:.2f} MiB" if c["xla_bytes"] else "-"
                lines.append(f"| {cell} | {label(r['method'], T)} | {fmt(r['test'])} | {cstr} | "
                             f"{c['updates_per_s']:.0f} | {c['updates_per_s'] / base:.2f} | {xla} | "
                             f"{c['carried_bytes'] / 2**10:.1f} KiB |")
        lines.append("")
    lines += ["## Published comparison", "", PUBLISHED, "",
              f"Wall time per part (s): {json.dumps({k: round(v) for k, v in res['seconds'].items()})}; load average "
              f"at the end {res['load_average']}; {res['cpus']} CPUs."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (the CI test)")
    ap.add_argument("--out", type=Path, default=HERE, help="where results.md and results.json go")
    ap.add_argument("--parts", default="copy,echo")
    a = ap.parse_args(argv)
    sz = SMOKE if a.smoke else FULL
    a.out.mkdir(parents=True, exist_ok=True)
    res, seconds = {}, {}
    for kind in a.parts.split(","):
        t0 = time.perf_counter()
        res[kind] = part(kind, sz)
        seconds[kind] = time.perf_counter() - t0
        print(f"[online] {kind} done in {seconds[kind]:.0f} s", flush=True)
    res.update(seconds=seconds, load_average=[round(x, 1) for x in os.getloadavg()], cpus=os.cpu_count(),
               mode="smoke" if a.smoke else "full")
    (a.out / "results.md").write_text(tables(res, sz))
    (a.out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    print(f"[online] wrote {a.out / 'results.md'} and results.json; {sum(seconds.values()):.0f} s", flush=True)
    return res


if __name__ == "__main__":
    main()
