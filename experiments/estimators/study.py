"""The estimators study: what the online alternatives to truncation (exact RTRL, UORO,
SnAp-1; jaxdl.estimators) buy over TBPTT(k1, k2), at what cost. It drives the trainers
directly through jaxdl's one training loop (jaxdl.train.loop.train_loop; seeds are members
of one vmapped program, as train.replicas does), measures, and writes the figures (PNG),
results.md (tables, settings, timings, load) and results.json (every number, every seed).

    ./launch.sh py experiments/estimators/study.py                      # the full study (slow test)
    ./launch.sh py experiments/estimators/study.py --smoke --out /tmp/e # tiny sizes, about a minute (CI)

Parts (README.md states the findings):
  learnability  echo with lag L in LAGS: TBPTT(10, k2) with k2 = L/2 (below) and 2L (above),
                RTRL, UORO, SnAp-1: same hidden size, same updates (one every 10 steps), 3 seeds
  quality       along an RTRL training run on echo: at snapshots of the parameters, the cosine
                between each estimator's gradient of the last 10 steps' loss and the exact one
                (RTRL over the whole stream), and UORO's relative variance over noise draws
  cost          seconds per update and the estimator's memory against hidden size, with the
                fitted exponent of each (log-log slope over the largest sizes)
  default       the default echo job's shapes (hidden 64, vocab 4, 32 streams, lag 8): updates/s
                of each estimator against TBPTT(10, 20), measured interleaved in one run
  add           Marschall, Cho & Savin (2020)'s add task (jaxdl.tasks.marschall) with each method
Nothing is selected on test data (no selection is made at all: every setting is fixed here).
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

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

FULL = {
    "seeds": 3,
    "learn": {"lags": [4, 8, 16, 32], "hidden": 16, "lr": 0.01, "epochs": 8, "every": 10,
              "task": {"vocab": 2, "length": 400, "streams": 8, "test_length": 1000, "val_length": 0}},
    "quality": {"lag": 8, "hidden": 16, "snapshots": 6, "updates_between": 8, "prefix": 100, "draws": 32,
                "task": {"vocab": 2, "length": 200, "streams": 8, "test_length": 100, "val_length": 0}},
    "cost": {"hiddens": [8, 16, 32, 64, 128], "rtrl_max_hidden": 64, "streams": 4, "updates": 2, "repeats": 3},
    "default": {"hidden": 64, "streams": 32, "vocab": 4, "lag": 8, "length": 20, "rounds": 1},
    "add": {"t1": 5, "t2": 9, "hidden": 16, "lr": 0.01, "epochs": 8,
            "methods": ["tbptt_k2_20", "tbptt_k2_4", "rtrl", "uoro", "snap1"],
            "task": {"length": 400, "streams": 8, "test_length": 1000, "val_length": 0}},
}

SMOKE = {
    "seeds": 2,
    "learn": {"lags": [4], "hidden": 4, "lr": 0.01, "epochs": 2, "every": 10,
              "task": {"vocab": 2, "length": 40, "streams": 2, "test_length": 40, "val_length": 0}},
    "quality": {"lag": 2, "hidden": 4, "snapshots": 2, "updates_between": 2, "prefix": 30, "draws": 4,
                "task": {"vocab": 2, "length": 40, "streams": 2, "test_length": 40, "val_length": 0}},
    "cost": {"hiddens": [4, 8], "rtrl_max_hidden": 8, "streams": 2, "updates": 2, "repeats": 1},
    "default": {"hidden": 8, "streams": 4, "vocab": 4, "lag": 8, "length": 20, "rounds": 1},
    "add": {"t1": 2, "t2": 4, "hidden": 4, "lr": 0.01, "epochs": 2, "methods": ["tbptt_k2_4", "snap1"],
            "task": {"length": 40, "streams": 2, "test_length": 40, "val_length": 0}},
}

ONLINE = ("rtrl", "uoro", "snap1")


def methods(L: int, sz: dict) -> list[str]:
    """The learnability rows for lag L: TBPTT(10, k2) below and above L, then the online ones."""
    return [f"tbptt_k2_{max(L // 2, 1)}", f"tbptt_k2_{2 * L}", *ONLINE]


def trainer_for(method: str, task, hidden: int, lr: float, every: int = 10):
    """The Trainer of a method name: "tbptt_k2_<k2>" (TBPTT(every, k2)) or an online estimator."""
    from jaxdl.config.schema import EstimatorConfig, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.optimizers import optimizers
    from jaxdl.train.online_trainer import online_trainer
    from jaxdl.train.tbptt_trainer import tbptt_trainer
    model, optim = RecurrentConfig(hidden=hidden), OptimConfig("adam", lr, 1.0)
    if method.startswith("tbptt"):
        k2 = int(method.rsplit("_", 1)[1])
        return tbptt_trainer(task, model, optim, TBPTTConfig(every, k2), TrainConfig(), 0)
    return online_trainer(task, model, optimizers(optim), EstimatorConfig(method, every), 0)


def stats(xs) -> dict:
    xs = np.asarray(xs, float)
    return {"mean": float(xs.mean()), "std": float(xs.std(ddof=1)) if len(xs) > 1 else 0.0, "n": len(xs),
            "values": xs.tolist()}


def fmt(s: dict, nd: int = 3) -> str:
    return f"{s['mean']:.{nd}f} ± {s['std']:.{nd}f}"


def train(method, task, hidden, lr, epochs, seeds, every=10) -> dict:
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, train_loop
    tr = trainer_for(method, task, hidden, lr, every)
    rec = MemoryRecorder()
    t0 = time.perf_counter()
    res = train_loop(tr, rec, LoopPlan(epochs, members=seeds, eval_every=epochs))
    return {"res": res, "rows": rec.logged, "wall_s": time.perf_counter() - t0,
            "updates": tr.updates_per_epoch * epochs}


# --------------------------------------------------------------------------- parts

def learnability(sz: dict) -> dict:
    from jaxdl.tasks.synthetic import EchoConfig, echo
    c = sz["learn"]
    cells = []
    for L in c["lags"]:
        task = echo(EchoConfig(lag=L, **c["task"]), 0)
        for m in methods(L, sz):
            r = train(m, task, c["hidden"], c["lr"], c["epochs"], sz["seeds"], c["every"])
            acc = r["res"].per_member["test/accuracy"]
            cells.append({"lag": L, "method": m, "test": stats(acc), "wall_s": r["wall_s"], "updates": r["updates"]})
            print(f"[study] learnability L={L} {m}: {fmt(cells[-1]['test'])} ({r['wall_s']:.0f} s)", flush=True)
    chance = 1.0 / c["task"]["vocab"]
    return {"cells": cells, "chance": chance, "learned_threshold": 1 - 0.1 * (1 - chance)}


def _window_grads(name, params, batch, prefix, key, every):
    """The gradient of the loss of steps [prefix - every, prefix) of a stream from a zero
    state, by estimator `name` (the influence carried from step 0), parameters fixed."""
    from jaxdl.estimators import get_estimator
    from jaxdl.models.rnn import rnn_carry
    from jaxdl.objectives import get_objective
    est = get_estimator(name, get_objective("xent"))
    B = batch.mask.shape[1]

    def body(c, inp):
        carry, st = c
        x, y, w, m, t = inp
        carry, st, g, _ = est.step(params, carry, st, x, y, w * (t >= prefix - every), m)
        return (carry, st), g
    xs = jax.tree.map(lambda a: a[:prefix], batch)
    _, gs = jax.lax.scan(body, (rnn_carry(params, B), est.init(params, B, key)),
                         (xs.x, xs.y, xs.weight, xs.mask, jnp.arange(prefix)))
    return jax.tree.map(lambda a: a.sum(0), gs)


def _tbptt_grad(params, batch, prefix, every, k2):
    """TBPTT(every, k2)'s gradient of the same window: BPTT through the last k2 steps only."""
    from jaxdl.models.rnn import rnn_apply, rnn_carry
    from jaxdl.objectives import softmax_xent
    B = batch.mask.shape[1]
    if prefix < k2:
        raise ValueError(f"the quality probe needs prefix >= k2, got prefix={prefix}, k2={k2}")
    c = rnn_carry(params, B)
    if prefix > k2:
        _, c = rnn_apply(params, batch.x[:prefix - k2], c)
    c = jax.lax.stop_gradient(c)
    sl = slice(prefix - k2, prefix)

    def loss(p):
        preds, _ = rnn_apply(p, batch.x[sl], c)
        w = batch.weight[sl] * (jnp.arange(prefix - k2, prefix) >= prefix - every)[:, None]
        return (softmax_xent(preds, batch.y[sl])["loss"] * w).sum()
    return jax.grad(loss)(params)


def _flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree["layers"])])


def quality(sz: dict) -> dict:
    """Cosines against the exact (RTRL) gradient at parameter snapshots of an RTRL run."""
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, train_loop
    c = sz["quality"]
    task = echo(EchoConfig(lag=c["lag"], **c["task"]), 0)
    probe = jax.tree.map(lambda a: jnp.asarray(a[0]), task.test)           # the stream the gradients are measured on
    epochs_per = 1
    tr = trainer_for("rtrl", task, c["hidden"], 0.01)
    state = None
    cos = {"uoro": [], "snap1": [], "tbptt": []}
    uoro_relvar, uoro_mean_cos, at_update = [], [], []
    every = 10
    grads = jax.jit(lambda n, p, k: _window_grads(n, p, probe, c["prefix"], k, every), static_argnums=0)
    tb = jax.jit(lambda p: _tbptt_grad(p, probe, c["prefix"], every, 20))
    keys = jax.random.split(jax.random.PRNGKey(7), c["draws"])
    for s in range(c["snapshots"]):
        if s:
            res = train_loop(tr, MemoryRecorder(), LoopPlan(epochs_per, members=1), state=state)
            state = res.state
        else:
            from jaxdl.train.loop import init_members
            state = init_members(tr, 0, 1)
        params = jax.tree.map(lambda a: a[0], state["params"])
        exact = _flat(grads("rtrl", params, keys[0]))
        cosine = lambda g: float(jnp.dot(g, exact) / (jnp.linalg.norm(g) * jnp.linalg.norm(exact) + 1e-30))
        cos["snap1"].append(cosine(_flat(grads("snap1", params, keys[0]))))
        cos["tbptt"].append(cosine(_flat(tb(params))))
        draws = jnp.stack([_flat(grads("uoro", params, k)) for k in keys])
        cos["uoro"].append(float(np.mean([cosine(g) for g in draws])))
        uoro_mean_cos.append(cosine(draws.mean(0)))
        uoro_relvar.append(float(((draws - exact) ** 2).sum(1).mean() / (exact ** 2).sum()))
        at_update.append(s * tr.updates_per_epoch * epochs_per)
        print(f"[study] quality snapshot {s}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in cos.items())
              + f", UORO mean of {c['draws']} {uoro_mean_cos[-1]:.3f}, rel. variance {uoro_relvar[-1]:.2f}", flush=True)
    return {"cosine": cos, "uoro_mean_of_draws_cosine": uoro_mean_cos, "uoro_relative_variance": uoro_relvar,
            "at_update": at_update, "draws": c["draws"], "tbptt": "TBPTT(10, 20)"}


def _state_bytes(tree) -> int:
    return int(sum(a.nbytes for a in jax.tree.leaves(tree)))


def _time_epoch(tr, repeats: int) -> tuple[float, dict]:
    """Median seconds of one (compiled) epoch of one member, and the member's state."""
    from jaxdl.train.loop import init_members
    state = init_members(tr, 0, 1)
    data = tr.epoch_inputs(0)
    f = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(state, data).compile()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(state, data))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), state


def _fit(hs, ts, top: int = 3) -> float | None:
    """Log-log slope of time against hidden size over the largest `top` sizes."""
    if len(hs) < 2:
        return None
    h, t = np.log(np.asarray(hs[-top:], float)), np.log(np.asarray(ts[-top:], float))
    return float(np.polyfit(h, t, 1)[0])


def cost(sz: dict) -> dict:
    from jaxdl.tasks.synthetic import EchoConfig, echo
    c = sz["cost"]
    every = 10
    task = echo(EchoConfig(lag=4, vocab=4, length=every * c["updates"], streams=c["streams"], test_length=10,
                           val_length=0), 0)
    rows = {m: [] for m in (*ONLINE, "tbptt")}
    for H in c["hiddens"]:
        for m in (*ONLINE, "tbptt"):
            if m == "rtrl" and H > c["rtrl_max_hidden"]:
                continue
            tr = trainer_for("tbptt_k2_20" if m == "tbptt" else m, task, H, 0.01)
            sec, state = _time_epoch(tr, c["repeats"])
            per = sec / tr.updates_per_epoch
            mem = _state_bytes(state["seq"])
            rows[m].append({"hidden": H, "s_per_update": per, "seq_state_bytes": mem})
            print(f"[study] cost H={H} {m}: {per * 1e3:.2f} ms/update, state {mem / 2**20:.2f} MiB", flush=True)
    expo = {m: _fit([r["hidden"] for r in v], [r["s_per_update"] for r in v]) for m, v in rows.items()}
    mem_expo = {m: _fit([r["hidden"] for r in v], [r["seq_state_bytes"] for r in v]) for m, v in rows.items()}
    return {"rows": rows, "exponent": expo, "memory_exponent": mem_expo, "streams": c["streams"],
            "fit": "log-log slope over the 3 largest hidden sizes"}


def default_job(sz: dict) -> dict:
    """Updates/s at the default echo job's shapes, interleaved rounds, one process."""
    from jaxdl.tasks.synthetic import EchoConfig, echo
    c = sz["default"]
    task = echo(EchoConfig(lag=c["lag"], vocab=c["vocab"], length=c["length"], streams=c["streams"], test_length=10,
                           val_length=0), 0)
    names = ["tbptt", *ONLINE]
    trs = {m: trainer_for("tbptt_k2_20" if m == "tbptt" else m, task, c["hidden"], 0.01) for m in names}
    fs, states = {}, {}
    from jaxdl.train.loop import init_members
    for m, tr in trs.items():
        states[m] = init_members(tr, 0, 1)
        fs[m] = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(states[m], tr.epoch_inputs(0)).compile()
    times = {m: [] for m in names}
    for _ in range(c["rounds"]):
        for m in names:
            t0 = time.perf_counter()
            jax.block_until_ready(fs[m](states[m], trs[m].epoch_inputs(0)))
            times[m].append(time.perf_counter() - t0)
    ups = {m: trs[m].updates_per_epoch / float(np.median(times[m])) for m in names}
    return {"updates_per_s": ups, "ratio_to_tbptt": {m: ups[m] / ups["tbptt"] for m in names},
            "settings": c, "load_average": os.getloadavg()}


def add_part(sz: dict) -> dict:
    from jaxdl.tasks.marschall import MarschallAddConfig, add, add_levels
    c = sz["add"]
    task = add(MarschallAddConfig(t1=c["t1"], t2=c["t2"], **c["task"]), 0)
    out = []
    for m in c["methods"]:
        r = train(m, task, c["hidden"], c["lr"], c["epochs"], sz["seeds"])
        out.append({"method": m, "test_loss": stats(r["res"].per_member["test/loss"]), "wall_s": r["wall_s"],
                    "curve": [x["row"].get("train/loss") for x in r["rows"]]})
        print(f"[study] add {m}: test loss {fmt(out[-1]['test_loss'])}", flush=True)
    return {"cells": out, "levels": add_levels(c["t1"], c["t2"]), "t1": c["t1"], "t2": c["t2"]}


# --------------------------------------------------------------------------- report

LABEL = {"rtrl": "RTRL", "uoro": "UORO", "snap1": "SnAp-1", "tbptt": "TBPTT(10, 20)"}


def label(m: str) -> str:
    if m.startswith("tbptt_k2_"):
        return f"TBPTT(10, {m.rsplit('_', 1)[1]})"
    return LABEL[m]


def figures(res: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = []
    # 1. learnability heatmap: rows lags, columns methods (below, above, RTRL, UORO, SnAp-1)
    L = res["learnability"]
    lags = sorted({c["lag"] for c in L["cells"]})
    cols = ["below", "above", *ONLINE]
    grid = np.zeros((len(lags), len(cols)))
    for i, lag in enumerate(lags):
        ms = [c for c in L["cells"] if c["lag"] == lag]
        for j, c in enumerate(ms):
            grid[i, j] = c["test"]["mean"]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.8 * len(lags)))
    im = ax.imshow(grid, vmin=L["chance"], vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(len(lags)):
        for j in range(len(cols)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w" if grid[i, j] < 0.8 else "k")
    ax.set_xticks(range(len(cols)), ["TBPTT k2=L/2", "TBPTT k2=2L", "RTRL", "UORO", "SnAp-1"])
    ax.set_yticks(range(len(lags)), [f"L={x}" for x in lags])
    fig.colorbar(im, label="test accuracy")
    ax.set_title("Echo: mean test accuracy over seeds")
    fig.tight_layout()
    fig.savefig(out / "learnability.png", dpi=110)
    plt.close(fig)
    names.append("learnability.png")
    # 2. gradient quality
    q = res["quality"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, v in q["cosine"].items():
        a1.plot(q["at_update"], v, "o-", label=LABEL.get(k, k) + (" (one draw)" if k == "uoro" else ""))
    a1.plot(q["at_update"], q["uoro_mean_of_draws_cosine"], "o--", label=f"UORO (mean of {q['draws']})")
    a1.set_xlabel("RTRL updates")
    a1.set_ylabel("cosine with exact gradient")
    a1.legend(fontsize=8)
    a1.set_ylim(-0.2, 1.05)
    a2.semilogy(q["at_update"], q["uoro_relative_variance"], "o-")
    a2.set_xlabel("RTRL updates")
    a2.set_ylabel("UORO E|g - g*|^2 / |g*|^2")
    fig.tight_layout()
    fig.savefig(out / "gradient_quality.png", dpi=110)
    plt.close(fig)
    names.append("gradient_quality.png")
    # 3. cost
    c = res["cost"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for m, rows in c["rows"].items():
        hs = [r["hidden"] for r in rows]
        e = c["exponent"][m]
        a1.loglog(hs, [r["s_per_update"] for r in rows], "o-", label=f"{LABEL[m]} (slope {e:.1f})" if e else LABEL[m])
        em = c["memory_exponent"][m]
        a2.loglog(hs, [max(r["seq_state_bytes"], 1) for r in rows], "o-",
                  label=f"{LABEL[m]} (slope {em:.1f})" if em else LABEL[m])
    a1.set_xlabel("hidden units")
    a1.set_ylabel("seconds per update")
    a1.legend(fontsize=8)
    a2.set_xlabel("hidden units")
    a2.set_ylabel("bytes of carried state (influence + carry)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=110)
    plt.close(fig)
    names.append("cost.png")
    # 4. add task curves
    a = res["add"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for cell in a["cells"]:
        ax.plot(range(1, len(cell["curve"]) + 1), cell["curve"], "o-", label=label(cell["method"]))
    for k, v in a["levels"].items():
        ax.axhline(v, color="gray", ls=":", lw=1)
        ax.text(0.02, v, k.replace("_", " "), fontsize=7, va="bottom", transform=ax.get_yaxis_transform())
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss (nats, mean of seeds)")
    ax.legend(fontsize=8)
    ax.set_title(f"Marschall add task, t1={a['t1']}, t2={a['t2']}")
    fig.tight_layout()
    fig.savefig(out / "add_task.png", dpi=110)
    plt.close(fig)
    names.append("add_task.png")
    return names


def tables(res: dict, sz: dict, mode: str) -> str:
    L = res["learnability"]
    lags = sorted({c["lag"] for c in L["cells"]})
    lines = [f"# Estimators study: results ({mode})", "",
             f"Settings: `{json.dumps(sz)}`", "",
             "## Learnability (echo, mean test accuracy ± std over seeds)", "",
             "| lag L | TBPTT(10, L/2) | TBPTT(10, 2L) | RTRL | UORO | SnAp-1 |", "|---|---|---|---|---|---|"]
    for lag in lags:
        ms = [c for c in L["cells"] if c["lag"] == lag]
        bold = lambda c: f"**{fmt(c['test'])}**" if c["test"]["mean"] >= L["learned_threshold"] else fmt(c["test"])
        lines.append(f"| {lag} | " + " | ".join(bold(c) for c in ms) + " |")
    lines += ["", f"Bold: learned (>= {L['learned_threshold']:.2f}); chance {L['chance']:.2f}.", "",
              "## Gradient quality (cosine with the exact gradient of the last 10 steps' loss)", "",
              "| after updates | "
              + " | ".join(LABEL[k] + (" one draw" if k == "uoro" else "") for k in res["quality"]["cosine"])
              + " | UORO mean of draws | UORO relative variance |",
              "|---" * (len(res["quality"]["cosine"]) + 3) + "|"]
    q = res["quality"]
    for i, u in enumerate(q["at_update"]):
        lines.append(f"| {u} | " + " | ".join(f"{v[i]:.3f}" for v in q["cosine"].values())
                     + f" | {q['uoro_mean_of_draws_cosine'][i]:.3f} | {q['uoro_relative_variance'][i]:.2f} |")
    c = res["cost"]
    hs = sorted({r["hidden"] for v in c["rows"].values() for r in v})
    lines += ["", f"## Cost per update (ms; {c['streams']} streams, one member) and fitted exponents", "",
              "| method | " + " | ".join(f"H={h}" for h in hs) + " | time exponent | memory exponent |",
              "|---" * (len(hs) + 3) + "|"]
    for m, rows in c["rows"].items():
        by = {r["hidden"]: r for r in rows}
        e, em = c["exponent"][m], c["memory_exponent"][m]
        tail = f" | {e:.2f} | {em:.2f} |" if e is not None else " | - | - |"
        lines.append(f"| {LABEL[m]} | " + " | ".join(f"{by[h]['s_per_update'] * 1e3:.2f}" if h in by else "-"
                                                   for h in hs) + tail)
    d = res["default"]
    lines += ["", "## The default echo job's shapes: updates/s (one run, interleaved)", "",
              "| method | updates/s | ratio to TBPTT(10, 20) |", "|---|---|---|"]
    for m, u in d["updates_per_s"].items():
        lines.append(f"| {LABEL[m]} | {u:.2f} | {d['ratio_to_tbptt'][m]:.4f} |")
    a = res["add"]
    lines += ["", f"## Marschall add task (t1={a['t1']}, t2={a['t2']}): test loss (nats)", "",
              "levels: " + ", ".join(f"{k} {v:.3f}" for k, v in a["levels"].items()), "",
              "| method | test loss |", "|---|---|"]
    for cell in a["cells"]:
        lines.append(f"| {label(cell['method'])} | {fmt(cell['test_loss'])} |")
    lines += ["", f"Wall time per part (s): {json.dumps({k: round(v) for k, v in res['seconds'].items()})}; "
              f"total {res['total_s']:.0f} s; load average at the end {res['load_average']}; {res['cpus']} CPUs."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (the CI test)")
    ap.add_argument("--out", type=Path, default=HERE, help="where results and figures go")
    ap.add_argument("--parts", default="learnability,quality,cost,default,add")
    a = ap.parse_args(argv)
    sz = SMOKE if a.smoke else FULL
    a.out.mkdir(parents=True, exist_ok=True)
    # programs that differ only in data (the echo lags) compile once
    import tempfile
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="estimators_study_jax_cache_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    res, seconds = {}, {}
    t_all = time.perf_counter()
    old = json.loads((a.out / "results.json").read_text()) if (a.out / "results.json").exists() else {}
    parts = a.parts.split(",")
    for name, fn in (("learnability", learnability), ("quality", quality), ("cost", cost),
                     ("default", default_job), ("add", add_part)):
        if name not in parts and name in old:
            res[name] = old[name]
            seconds[name] = old.get("seconds", {}).get(name, 0.0)
            continue
        t0 = time.perf_counter()
        res[name] = fn(sz)
        seconds[name] = time.perf_counter() - t0
        print(f"[study] {name} done in {seconds[name]:.0f} s", flush=True)
    res.update(seconds=seconds, total_s=sum(seconds.values()), measured_s=time.perf_counter() - t_all,
               load_average=[round(x, 1) for x in os.getloadavg()], cpus=os.cpu_count(),
               mode="smoke" if a.smoke else "full")
    res["figures"] = figures(res, a.out)
    (a.out / "results.md").write_text(tables(res, sz, res["mode"]))
    (a.out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    print(f"[study] wrote {a.out / 'results.md'}, results.json and {', '.join(res['figures'])}; "
          f"{res['total_s']:.0f} s", flush=True)
    return res


if __name__ == "__main__":
    main()
