"""The truncation study: what TBPTT(k1, k2) can learn, what k1 < k2 costs, and which
truncation a char-LSTM wants at equal compute. Runs every job with Hydra multirun
(`python -m jaxdl.main -m ...`), reads the run directories only, and writes the figures
(PNG), results.md (tables, the commands, the timings) and results.json (every number).

    ./launch.sh py experiments/truncation/study.py              # the full study (11 min on 2 CPU cores)
    ./launch.sh py experiments/truncation/study.py --smoke --out /tmp/t   # tiny sizes, about a minute (CI)
    ./launch.sh py experiments/truncation/study.py --report-only  # redraw from the existing run dirs

Parts (README.md states the findings):
  echo        learnability: echo with lag L against k2, k1 = min(k2, 10), 5 seeds per cell
  adding      the adding problem against k2: TBPTT(k1 = T, k2), one update per sequence
  k1cost      at k2 = 20, k1 in {1, 2, 5, 10, 20}: updates/s, time to a val target, final accuracy
  text        char-LSTM on tiny-shakespeare, TBPTT(k, k) (equal compute): val bits/char; per k a
              population over learning rates x seeds, the lr chosen on val
  throughput  the echo default job: members x updates/s of a population against one member
Nothing is selected on test: targets and selections read val. Each Hydra process gets a JAX
compilation cache private to the study run, so jobs that differ only in data compile once.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Settings every job of the study shares: the study reads run dirs, so no wandb run is made
# (an offline wandb run costs seconds per job); one checkpoint at the end; no progress bar.
QUIET = ["logger.mode=disabled", "train.progress=false", "train.checkpoint_every=1000"]

FULL = {
    "replicas": 5,
    "echo": {"lags": [2, 4, 8, 16], "k2s": [1, 2, 4, 8, 16, 32, 64], "k1_max": 10,
             "task": {"vocab": 2, "length": 500, "streams": 16, "val_length": 500, "test_length": 1000},
             "hidden": 64, "epochs": 6},
    "adding": {"length": 32, "k2s": [1, 4, 16, 32], "hidden": 64, "epochs": 10, "lr": 0.01,
               "task": {"batch": 32, "train_size": 2048, "val_size": 512, "test_size": 1024}},
    "k1cost": {"lag": 4, "k2": 20, "k1s": [1, 2, 5, 10, 20], "target": 0.99, "hidden": 64, "epochs": 25,
               "task": {"vocab": 2, "length": 100, "streams": 16, "val_length": 500, "test_length": 1000}},
    "text": {"ks": [1, 4, 16, 64], "lrs": [0.003, 0.01], "hidden": 128, "epochs": 3, "replicas": 3,
             "task": {"max_chars": 100000, "streams": 32, "sample_chars": 200}},
    "throughput": {"replicas": [1, 16], "epochs": 3},
}

SMOKE = {
    "replicas": 2,
    "echo": {"lags": [2, 4], "k2s": [1, 4], "k1_max": 10,
             "task": {"vocab": 2, "length": 60, "streams": 2, "val_length": 40, "test_length": 40},
             "hidden": 8, "epochs": 2},
    "adding": {"length": 8, "k2s": [2, 8], "hidden": 8, "epochs": 2, "lr": 0.01,
               "task": {"batch": 4, "train_size": 16, "val_size": 8, "test_size": 8}},
    "k1cost": {"lag": 2, "k2": 4, "k1s": [1, 4], "target": 0.6, "hidden": 8, "epochs": 3,
               "task": {"vocab": 2, "length": 40, "streams": 2, "val_length": 40, "test_length": 40}},
    "text": {"ks": [2, 8], "lrs": [0.003, 0.01], "hidden": 8, "epochs": 2, "replicas": 2,
             "task": {"max_chars": 3000, "streams": 4, "sample_chars": 10}},
    "throughput": {"replicas": [1, 2], "epochs": 2,
                   "task": {"length": 60, "streams": 2, "val_length": 40, "test_length": 40}, "hidden": 8},
}


# --------------------------------------------------------------------------- running

def kv(prefix: str, d: dict) -> list[str]:
    return [f"{prefix}.{k}={v}" for k, v in d.items()]


RUNNING: set = set()      # the Hydra processes this study started and that are still running
LOAD: dict = {}           # multirun name -> 5-minute load average when it ended (a shared machine)


def hydra_multirun(sweep_dir: Path, overrides: list[str], subdir: str, env: dict, log: Path) -> float:
    """`python -m jaxdl.main -m <overrides>` into sweep_dir (job dirs named by `subdir`);
    returns its wall time. A failed job fails the study, naming the log."""
    cmd = [sys.executable, "-m", "jaxdl.main", "-m", f"hydra.sweep.dir={sweep_dir}",
           f"hydra.sweep.subdir={subdir}", *QUIET, *overrides]
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        f.write(" ".join(cmd) + "\n\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        RUNNING.add(proc)
        try:
            rc = proc.wait()
        finally:
            RUNNING.discard(proc)
    dt = time.perf_counter() - t0
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"a job failed (exit {rc}); its log is {log}:\n{tail}")
    return dt


def jobs_of(sz: dict) -> dict[str, list[tuple[str, list[str], str]]]:
    """Every Hydra multirun of the study, by part: (sweep name, overrides, subdir pattern).
    Shape keys (k1, k2) are swept with -m; seeds are train.replicas in one program."""
    R = sz["replicas"]
    e, a, c, t, p = sz["echo"], sz["adding"], sz["k1cost"], sz["text"], sz["throughput"]
    echo_common = ["task=echo", *kv("task", e["task"]), f"model.hidden={e['hidden']}",
                   f"train.epochs={e['epochs']}", f"train.replicas={R}",
                   "task.lag=" + ",".join(map(str, e["lags"]))]
    # k1 = min(k2, k1_max): one multirun per k1 value (Hydra sweeps are products)
    by_k1: dict[int, list[int]] = {}
    for k2 in e["k2s"]:
        by_k1.setdefault(min(k2, e["k1_max"]), []).append(k2)
    small = [k2 for k1, k2s in by_k1.items() for k2 in k2s if k1 == k2]
    echo = []
    if small:   # k1 = k2 (non-overlapping chunks)
        echo.append(("echo_k1_eq_k2", echo_common + ["tbptt.k2=" + ",".join(map(str, small)),
                                                      "tbptt.k1=${tbptt.k2}"], "L${task.lag}_k2_${tbptt.k2}"))
    for k1, k2s in sorted(by_k1.items()):
        big = [k2 for k2 in k2s if k2 != k1]
        if big:
            echo.append((f"echo_k1_{k1}", echo_common + ["tbptt.k2=" + ",".join(map(str, big)), f"tbptt.k1={k1}"],
                         "L${task.lag}_k2_${tbptt.k2}"))
    adding = [("adding", ["task=adding", f"task.length={a['length']}", *kv("task", a["task"]),
                          f"model.hidden={a['hidden']}", f"optim.lr={a['lr']}", f"train.epochs={a['epochs']}",
                          f"train.replicas={R}", f"tbptt.k1={a['length']}",
                          "tbptt.k2=" + ",".join(map(str, a["k2s"]))], "k2_${tbptt.k2}")]
    k1cost = [("k1cost", ["task=echo", f"task.lag={c['lag']}", *kv("task", c["task"]), f"model.hidden={c['hidden']}",
                          f"train.epochs={c['epochs']}", f"train.replicas={R}", f"tbptt.k2={c['k2']}",
                          "tbptt.k1=" + ",".join(map(str, c["k1s"]))], "k1_${tbptt.k1}")]
    text = [("text", ["task=textgen", *kv("task", t["task"]), f"model.hidden={t['hidden']}",
                      f"train.epochs={t['epochs']}", f"train.replicas={t['replicas']}",
                      "population.optim.lr=[" + ",".join(map(str, t["lrs"])) + "]",
                      "tbptt.k2=" + ",".join(map(str, t["ks"])), "tbptt.k1=${tbptt.k2}"], "k_${tbptt.k2}")]
    thr = [("throughput", ["task=echo", *kv("task", p.get("task", {})),
                           *([f"model.hidden={p['hidden']}"] if "hidden" in p else []),
                           f"train.epochs={p['epochs']}", "train.replicas=" + ",".join(map(str, p["replicas"]))],
            "replicas_${train.replicas}")]
    return {"echo": echo, "adding": adding, "k1cost": k1cost, "text": text, "throughput": thr}


def study_env(cache: Path) -> dict:
    """The jobs' environment: the caller's, plus a JAX compilation cache private to this
    study (empty at its start, so the measured time includes every compile; jobs whose
    programs differ only in data, e.g. echo lags, compile once)."""
    env = dict(os.environ)
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               WANDB_MODE="offline", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def train_all(sz: dict, runs: Path, parallel: int) -> dict:
    """Run every part's multiruns; returns {part: seconds}. The parts whose numbers are
    timings (k1cost, throughput) run alone, after the rest; the others may run
    `parallel` Hydra processes at once."""
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    env = study_env(runs / "jax_cache")
    jobs = jobs_of(sz)
    seconds: dict[str, float] = {}

    def go(part, item):
        name, ov, sub = item
        print(f"[study] {part}: {name} ...", flush=True)
        dt = hydra_multirun(runs / name, ov, sub, env, runs / "logs" / f"{name}.log")
        LOAD[name] = os.getloadavg()[1]          # the machine's 5-minute load average as it ends
        print(f"[study] {part}: {name} done in {dt:.0f} s (load average {LOAD[name]:.1f})", flush=True)
        return part, dt

    free = [(p, it) for p in ("echo", "adding", "text") for it in jobs[p]]
    try:
        with ThreadPoolExecutor(max(1, parallel)) as ex:
            futures = [ex.submit(go, *x) for x in free]
            try:
                for fut in futures:
                    part, dt = fut.result()
                    seconds[part] = seconds.get(part, 0.0) + dt
            except BaseException:
                for fut in futures:
                    fut.cancel()
                for proc in list(RUNNING):  # stop the other Hydra processes this study started
                    proc.terminate()
                raise
        for p in ("k1cost", "throughput"):
            for it in jobs[p]:
                part, dt = go(p, it)
                seconds[part] = seconds.get(part, 0.0) + dt
    except BaseException as err:
        if isinstance(err, RuntimeError):
            raise SystemExit(f"[study] {err}") from None
        raise
    return seconds


# --------------------------------------------------------------------------- reading

def load_runs(sweep: Path) -> list[dict]:
    """Every job dir of a sweep: its composed config (unresolved: k1 may read ${tbptt.k2}; the
    summary's "tbptt" has the values), summary and metrics rows."""
    out = []
    for d in sorted(p for p in sweep.iterdir() if (p / "summary.json").exists()):
        cfg = yaml.safe_load((d / ".hydra" / "config.yaml").read_text())
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
        out.append({"dir": d, "cfg": cfg, "summary": json.loads((d / "summary.json").read_text()), "rows": rows})
    if not out:
        raise SystemExit(f"[study] no finished runs under {sweep}; run the study without --report-only first")
    return out


def member_finals(run: dict, key: str) -> list[float]:
    """The final value of `key` for every member of a run (n = members)."""
    return [m["final"][key] for m in run["summary"]["members"]]


def member_curves(run: dict, key: str) -> np.ndarray:
    """[members, epochs] of `key` from metrics.jsonl (per-member rows; the mean rows for one member)."""
    rows = run["rows"]
    M = len(run["summary"]["members"])
    if M == 1:
        return np.array([[r[key] for r in rows if "member" not in r and key in r]])
    return np.array([[r[key] for r in rows if r.get("member") == i and key in r] for i in range(M)])


def stats(xs) -> dict:
    """Over seeds: mean, sample std (ddof 1; 0 for one value), n and the values themselves."""
    xs = np.asarray(xs, float)
    n = len(xs)
    std = float(xs.std(ddof=1)) if n > 1 else 0.0
    return {"mean": float(xs.mean()), "std": std, "n": n, "values": xs.tolist()}


def fmt(s: dict, nd: int = 3) -> str:
    return f"{s['mean']:.{nd}f} ± {s['std']:.{nd}f}"


# --------------------------------------------------------------------------- parts

def echo_part(runs: Path, sz: dict) -> dict:
    cells = {}
    for sweep in sorted(runs.glob("echo_*")):
        for r in load_runs(sweep):
            L, k1, k2 = r["cfg"]["task"]["lag"], r["summary"]["tbptt"]["k1"], r["summary"]["tbptt"]["k2"]
            cells[(L, k2)] = {"L": L, "k1": k1, "k2": k2, "test": stats(member_finals(r, "test/accuracy")),
                              "val": stats(member_finals(r, "val/accuracy")),
                              "epoch_time_s": r["summary"]["epoch_time_s"], "chance": r["summary"]["chance"],
                              "updates_per_epoch": r["summary"]["updates_per_epoch"], "dir": r["dir"].name}
    lags = sorted({L for L, _ in cells})
    k2s = sorted({k2 for _, k2 in cells})
    chance = next(iter(cells.values()))["chance"]
    # a cell is "learned" when its mean test accuracy closes 90% of the gap from chance to 1,
    # "at chance" when within 0.02 of chance
    learned_at = 1 - 0.1 * (1 - chance)
    boundary = {}
    for L in lags:
        ok = [k2 for k2 in k2s if cells[(L, k2)]["test"]["mean"] >= learned_at]
        boundary[L] = min(ok) if ok else None
    return {"cells": list(cells.values()), "lags": lags, "k2s": k2s, "chance": chance,
            "learned_threshold": learned_at, "smallest_k2_learned": boundary}


def adding_part(runs: Path) -> dict:
    out = []
    for r in load_runs(runs / "adding"):
        out.append({"k1": r["summary"]["tbptt"]["k1"], "k2": r["summary"]["tbptt"]["k2"],
                    "T": r["cfg"]["task"]["length"], "test": stats(member_finals(r, "test/mse")),
                    "val": stats(member_finals(r, "val/mse")), "val_curve": member_curves(r, "val/mse").tolist(),
                    "epoch_time_s": r["summary"]["epoch_time_s"],
                    "updates_per_epoch": r["summary"]["updates_per_epoch"], "dir": r["dir"].name})
    return {"cells": sorted(out, key=lambda c: c["k2"]), "baseline": 1 / 6, "one_marker": 1 / 12}


def k1cost_part(runs: Path, target: float) -> dict:
    out = []
    for r in load_runs(runs / "k1cost"):
        s = r["summary"]
        curves = member_curves(r, "val/accuracy")                     # [members, epochs]
        ep_s = s["epoch_time_s"]
        hit = [int(np.argmax(c >= target)) + 1 if (c >= target).any() else None for c in curves]
        reached = [h for h in hit if h is not None]
        out.append({"k1": r["summary"]["tbptt"]["k1"], "k2": r["summary"]["tbptt"]["k2"],
                    "updates_per_epoch": s["updates_per_epoch"], "members": len(s["members"]),
                    "member_updates_per_s": s["updates_per_s"], "epoch_time_s": ep_s,
                    # seconds of training (the timed epochs' mean, compile excluded) until a member's
                    # val accuracy first reaches the target, evaluated at epoch ends
                    "epochs_to_target": hit, "reached": len(reached),
                    "updates_to_target": stats([h * s["updates_per_epoch"] for h in reached]) if reached else None,
                    "steps_to_target": stats([h * s["updates_per_epoch"] * r["summary"]["tbptt"]["k1"]
                                              for h in reached]) if reached else None,
                    "time_to_target_s": stats([h * ep_s for h in reached]) if reached else None,
                    "test": stats(member_finals(r, "test/accuracy")), "val": stats(member_finals(r, "val/accuracy")),
                    "val_curve": curves.tolist(), "dir": r["dir"].name})
    return {"cells": sorted(out, key=lambda c: c["k1"]), "target": target}


def text_part(runs: Path) -> dict:
    """Per k: the members grouped by learning rate (the population), the lr selected by mean
    val bpc over seeds, and that lr's val and test bpc; then the k selected on val."""
    out = []
    for r in load_runs(runs / "text"):
        s = r["summary"]
        k = r["summary"]["tbptt"]["k2"]
        T = s["updates_per_epoch"] * r["summary"]["tbptt"]["k1"]          # steps per stream per epoch
        curves = member_curves(r, "val/bpc")
        by_lr = {}
        for m in s["members"]:
            by_lr.setdefault(m["hparams"]["optim.lr"], []).append(m)
        lrs = {lr: {"lr": lr, "val": stats([m["final"]["val/bpc"] for m in ms]),
                    "test": stats([m["final"]["test/bpc"] for m in ms]),
                    "val_curve": curves[[m["member"] for m in ms]].tolist()} for lr, ms in sorted(by_lr.items())}
        sel = min(lrs.values(), key=lambda c: c["val"]["mean"])        # selected on val, never test
        out.append({"k": k, "updates_per_epoch": s["updates_per_epoch"],
                    "chars_per_epoch": T * r["cfg"]["task"]["streams"], "epochs": s["epochs_run"],
                    "members": len(s["members"]), "by_lr": list(lrs.values()), "lr": sel["lr"],
                    "val": sel["val"], "test": sel["test"], "val_curve": sel["val_curve"],
                    "wall_time_s": s["wall_time_s"], "epoch_time_s": s["epoch_time_s"],
                    "unigram_bpc": s["chance"], "dir": r["dir"].name})
    out.sort(key=lambda c: c["k"])
    best = min(out, key=lambda c: c["val"]["mean"])                  # selected on val, never test
    return {"cells": out, "selected_on_val": {"k": best["k"], "lr": best["lr"], "val": best["val"],
                                              "test": best["test"]}}


def throughput_part(runs: Path) -> dict:
    out = []
    for r in load_runs(runs / "throughput"):
        s = r["summary"]
        out.append({"members": len(s["members"]), "member_updates_per_s": s["updates_per_s"],
                    "epoch_time_s": s["epoch_time_s"], "updates_per_epoch": s["updates_per_epoch"],
                    "test_accuracy": stats(member_finals(r, "test/accuracy")), "dir": r["dir"].name,
                    "about": f"echo, TBPTT({r['summary']['tbptt']['k1']},{r['summary']['tbptt']['k2']}), "
                             f"hidden {r['cfg']['model']['hidden']}, {r['cfg']['task']['streams']} streams x "
                             f"{r['cfg']['task']['length']} steps"})
    out.sort(key=lambda c: c["members"])
    one = next((c for c in out if c["members"] == 1), None)
    for c in out:
        c["ratio_to_one"] = c["member_updates_per_s"] / one["member_updates_per_s"] if one else None
    return {"cells": out}


# --------------------------------------------------------------------------- figures

def figures(res: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)

    # 1. echo heatmap
    e = res["echo"]
    lags, k2s = e["lags"], e["k2s"]
    grid = {(c["L"], c["k2"]): c for c in e["cells"]}
    M = np.array([[grid[(L, k2)]["test"]["mean"] for k2 in k2s] for L in lags])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(k2s) + 2.2), 0.8 * len(lags) + 1.9))
    im = ax.imshow(M, cmap="viridis", vmin=e["chance"], vmax=1.0, origin="lower", aspect="auto")
    for i, L in enumerate(lags):
        for j, k2 in enumerate(k2s):
            c = grid[(L, k2)]["test"]
            ax.text(j, i, f"{c['mean']:.2f}\n±{c['std']:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if c["mean"] > e["chance"] + 0.6 * (1 - e["chance"]) else "white")
    # the line k2 = L: cells right of it have k2 > L
    xs, ys = [], []
    for i, L in enumerate(lags):
        j = sum(k2 <= L for k2 in k2s) - 0.5
        xs += [j, j]
        ys += [i - 0.5, i + 0.5]
    ax.plot(xs, ys, color="red", lw=2)
    ax.set_xticks(range(len(k2s)), [str(k) for k in k2s])
    ax.set_yticks(range(len(lags)), [str(L) for L in lags])
    ax.set_xlabel("k2, steps of backpropagation (k1 = min(k2, 10));  red line: k2 = L, right of it k2 > L",
                  fontsize=8)
    ax.set_ylabel("echo lag L")
    n = e["cells"][0]["test"]["n"]
    ax.set_title(f"Echo: mean test accuracy over {n} seeds (chance {e['chance']:.2f})", fontsize=10)
    fig.colorbar(im, ax=ax, label="test accuracy")
    save(fig, "echo_heatmap.png")

    # 2. adding: test MSE against k2, and val curves
    a = res["adding"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ks = [c["k2"] for c in a["cells"]]
    for c in a["cells"]:
        ax1.scatter([c["k2"]] * c["test"]["n"], c["test"]["values"], color="grey", s=12, zorder=2)
    ax1.errorbar(ks, [c["test"]["mean"] for c in a["cells"]], yerr=[c["test"]["std"] for c in a["cells"]],
                 marker="o", capsize=3, zorder=3, label=f"mean ± std (n={a['cells'][0]['test']['n']})")
    ax1.axhline(a["baseline"], ls="--", color="k", lw=1, label="predict 1.0: 1/6")
    ax1.axhline(a["one_marker"], ls=":", color="k", lw=1, label="know one value: 1/12")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xticks(ks, [str(k) for k in ks])
    ax1.set_xlabel(f"k2 (TBPTT(k1 = T = {a['cells'][0]['T']}, k2))")
    ax1.set_ylabel("test MSE (grey: each seed)")
    ax1.set_title("Adding problem: test MSE against k2", fontsize=10)
    ax1.legend(fontsize=7)
    palette = plt.get_cmap("tab10")
    for i, c in enumerate(a["cells"]):
        cur = np.array(c["val_curve"])
        ep = np.arange(1, cur.shape[1] + 1)
        col = palette(i % 10)
        ax2.plot(ep, cur.mean(0), color=col, label=f"k2={c['k2']}")
        ax2.fill_between(ep, cur.min(0), cur.max(0), color=col, alpha=0.15)
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val MSE (mean; band: min-max over seeds)")
    ax2.set_title("Adding problem: validation curves", fontsize=10)
    ax2.legend(fontsize=7, ncol=2)
    save(fig, "adding_k2.png")

    # 3. k1 cost
    k = res["k1cost"]
    fig, axs = plt.subplots(1, 3, figsize=(13, 3.8))
    k1s = [c["k1"] for c in k["cells"]]
    labels = [str(x) for x in k1s]
    axs[0].bar(labels, [c["epoch_time_s"] for c in k["cells"]], color="tab:blue")
    for i, c in enumerate(k["cells"]):
        axs[0].text(i, c["epoch_time_s"], f"{c['member_updates_per_s']:.0f}", ha="center", va="bottom", fontsize=8)
    axs[0].set_yscale("log")
    axs[0].set_xlabel(f"k1 (k2 = {k['cells'][0]['k2']})")
    axs[0].set_ylabel("seconds per epoch (same data)")
    axs[0].set_title("Cost of an epoch (label: member-updates/s)", fontsize=10)
    for i, c in enumerate(k["cells"]):
        cur = np.array(c["val_curve"])
        t = np.arange(1, cur.shape[1] + 1) * c["epoch_time_s"]
        col = palette(i % 10)
        axs[1].plot(t, cur.mean(0), color=col, marker=".", label=f"k1={c['k1']}")
        axs[1].fill_between(t, cur.min(0), cur.max(0), color=col, alpha=0.15)
    axs[1].axhline(k["target"], ls="--", color="k", lw=1, label=f"target {k['target']}")
    axs[1].set_xscale("log")
    axs[1].set_xlabel("training seconds (epochs x timed epoch mean)")
    axs[1].set_ylabel("val accuracy (mean; band: min-max)")
    axs[1].set_title("Validation accuracy against wall time", fontsize=10)
    axs[1].legend(fontsize=7)
    tt = [c["time_to_target_s"] for c in k["cells"]]
    axs[2].bar(labels, [s["mean"] if s else 0 for s in tt], yerr=[s["std"] if s else 0 for s in tt],
               color="tab:orange", capsize=3)
    for i, c in enumerate(k["cells"]):
        axs[2].text(i, (tt[i]["mean"] + tt[i]["std"] if tt[i] else 0), f"{c['reached']}/{c['members']}",
                    ha="center", va="bottom", fontsize=8)
    axs[2].set_xlabel("k1")
    axs[2].set_ylabel(f"seconds to val accuracy >= {k['target']}")
    axs[2].set_title("Time to target (label: seeds that reached it)", fontsize=10)
    save(fig, "k1_cost.png")

    # 4. text
    t = res["text"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ks = [c["k"] for c in t["cells"]]
    n = t["cells"][0]["val"]["n"]
    for j, lr in enumerate(x["lr"] for x in t["cells"][0]["by_lr"]):
        v = [next(x for x in c["by_lr"] if x["lr"] == lr)["val"] for c in t["cells"]]
        ax1.errorbar(ks, [x["mean"] for x in v], yerr=[x["std"] for x in v], marker="o", capsize=3,
                     color=palette(j), label=f"lr {lr}")
    ax1.scatter(ks, [c["val"]["mean"] for c in t["cells"]], s=160, facecolors="none", edgecolors="k",
                label="lr selected on val", zorder=3)
    ax1.set_xscale("log")
    ax1.set_xticks(ks, [str(x) for x in ks])
    ax1.set_xlabel("k in TBPTT(k, k): every character read once, forward and backward")
    ax1.set_ylabel(f"val bits per character (mean ± std, n={n})")
    ax1.set_title("Char-LSTM on tiny-shakespeare at equal compute", fontsize=10)
    ax1.legend(fontsize=7)
    for i, c in enumerate(t["cells"]):
        cur = np.array(c["val_curve"])
        x = np.arange(1, cur.shape[1] + 1) * c["chars_per_epoch"] / 1e3
        col = palette(i % 10)
        ax2.plot(x, cur.mean(0), color=col, marker=".", label=f"k={c['k']} (lr {c['lr']})")
        ax2.fill_between(x, cur.min(0), cur.max(0), color=col, alpha=0.15)
    ax2.set_xlabel("thousands of training characters read")
    ax2.set_ylabel("val bpc at the selected lr (band: min-max)")
    ax2.set_title("Validation bpc against characters read", fontsize=10)
    ax2.legend(fontsize=7)
    save(fig, "text_k2.png")
    return made


# --------------------------------------------------------------------------- tables

def tables(res: dict, commands: dict, seconds: dict, total_s: float | None, mode: str, load: dict) -> str:
    e, a, k, t, p = res["echo"], res["adding"], res["k1cost"], res["text"], res["throughput"]
    L = []
    L.append(f"# Truncation study: tables ({mode})\n")
    L.append("Written by `experiments/truncation/study.py` from the run directories; every value is over "
             "the members (seeds) of one run: mean ± sample std, n members.\n")
    L.append(f"## Echo: mean test accuracy (± std, n = {e['cells'][0]['test']['n']}); chance {e['chance']:.3f}\n")
    L.append("| lag L \\ k2 | " + " | ".join(str(x) for x in e["k2s"]) + " |")
    L.append("|---" * (len(e["k2s"]) + 1) + "|")
    grid = {(c["L"], c["k2"]): c for c in e["cells"]}
    for lag in e["lags"]:
        L.append(f"| {lag} | " + " | ".join(
            (f"**{fmt(grid[(lag, x)]['test'], 3)}**" if grid[(lag, x)]["test"]["mean"] >= e["learned_threshold"]
             else fmt(grid[(lag, x)]["test"], 3)) for x in e["k2s"]) + " |")
    L.append(f"\nBold: learned (mean >= {e['learned_threshold']:.2f}, 90% of the way from chance to 1). "
             "k1 per column: " + ", ".join(f"k2={x}: k1={grid[(e['lags'][0], x)]['k1']}" for x in e["k2s"]) + ".")
    L.append("Smallest k2 that learns, per lag: " + ", ".join(
        f"L={lag}: {v if v is not None else 'none'}" for lag, v in e["smallest_k2_learned"].items()) + ".\n")
    L.append(f"## Adding problem (T = {a['cells'][0]['T']}, TBPTT(k1 = T, k2)): test MSE\n")
    L.append("| k2 | test MSE | val MSE | updates/epoch | s/epoch |")
    L.append("|---|---|---|---|---|")
    for c in a["cells"]:
        L.append(f"| {c['k2']} | {fmt(c['test'], 4)} | {fmt(c['val'], 4)} | {c['updates_per_epoch']} | "
                 f"{c['epoch_time_s']:.2f} |")
    L.append(f"\nReference levels: predicting 1.0 gives {a['baseline']:.3f}; knowing one of the two values exactly "
             f"gives {a['one_marker']:.3f}.\n")
    L.append(f"## The cost of k1 < k2 (echo, k2 = {k['cells'][0]['k2']}; target: val accuracy >= {k['target']})\n")
    L.append("| k1 | updates/epoch | member-updates/s | s/epoch | seeds at target | updates to target | "
             "time steps to target | s to target | final val acc | final test acc |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for c in k["cells"]:
        tt, ut, st = c["time_to_target_s"], c["updates_to_target"], c["steps_to_target"]
        L.append(f"| {c['k1']} | {c['updates_per_epoch']} | {c['member_updates_per_s']:.0f} | "
                 f"{c['epoch_time_s']:.3f} | {c['reached']}/{c['members']} | {fmt(ut, 0) if ut else '-'} | "
                 f"{fmt(st, 0) if st else '-'} | {fmt(tt, 2) if tt else '-'} | {fmt(c['val'], 4)} | "
                 f"{fmt(c['test'], 4)} |")
    L.append("\nThe target is checked at epoch ends (evaluation every epoch), so a count is the first epoch end at "
             "or past the target. Seconds are training time of the whole population program (all seeds "
             "together): the mean timed epoch (compile excluded) times that epoch. Time steps: steps of each "
             "stream read (epochs x stream length).\n")
    L.append("## Char-LSTM on tiny-shakespeare, TBPTT(k, k), equal compute\n")
    lrs = [x["lr"] for x in t["cells"][0]["by_lr"]]
    L.append("| k | updates/epoch | characters/epoch | " + " | ".join(f"val bpc, lr {lr}" for lr in lrs) +
             " | lr selected on val | its val bpc | its test bpc | s/epoch |")
    L.append("|---" * (7 + len(lrs)) + "|")
    for c in t["cells"]:
        L.append(f"| {c['k']} | {c['updates_per_epoch']} | {c['chars_per_epoch']} | " +
                 " | ".join(fmt(x["val"], 3) for x in c["by_lr"]) +
                 f" | {c['lr']} | {fmt(c['val'], 3)} | {fmt(c['test'], 3)} | {c['epoch_time_s']:.2f} |")
    s = t["selected_on_val"]
    L.append(f"\nn = {t['cells'][0]['val']['n']} seeds per learning rate; each k is one population run "
             f"({t['cells'][0]['members']} members: {len(lrs)} learning rates x seeds). s/epoch is the whole "
             f"population's. Selected on val: k = {s['k']} at lr {s['lr']} (val bpc {fmt(s['val'], 3)}); its test "
             f"bpc {fmt(s['test'], 3)}. Unigram: {t['cells'][0]['unigram_bpc']:.3f} bpc.\n")
    L.append("## Population throughput (this CPU)\n")
    L.append(f"{p['cells'][0]['about']}; each row is one run, its members trained by one vmapped program.\n")
    L.append("| members | member-updates/s | ratio to 1 member | s/epoch |")
    L.append("|---|---|---|---|")
    for c in p["cells"]:
        r = f"{c['ratio_to_one']:.2f}x" if c["ratio_to_one"] else "-"
        L.append(f"| {c['members']} | {c['member_updates_per_s']:.0f} | {r} | {c['epoch_time_s']:.2f} |")
    L.append("\n## Commands (Hydra multirun; `" + " ".join(QUIET) + "` on every job)\n")
    for name, (ov, sub) in commands.items():
        L.append(f"- `{name}`: `python -m jaxdl.main -m {' '.join(ov)}`")
    if seconds:
        L.append("\n## Wall time\n")
        L.append(", ".join(f"{p}: {v:.0f} s" for p, v in seconds.items()) +
                 (f"; whole study {total_s:.0f} s ({total_s / 60:.1f} min)" if total_s else "") +
                 f" on {res['cpus']} CPU cores.")
        if load:
            L.append("The machine was shared: its 5-minute load average as each multirun ended was " +
                     ", ".join(f"{k} {v:.1f}" for k, v in load.items()) + ".")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- main

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI): the whole pipeline in about a minute")
    ap.add_argument("--out", default=None, help="where figures, results.md and results.json go "
                    "(default: experiments/truncation for the full study, experiments/truncation/runs/smoke "
                    "for --smoke); run dirs go to OUT/runs")
    ap.add_argument("--parallel", type=int, default=None,
                    help="Hydra processes at once for the untimed parts (default 1; 2 with --smoke)")
    ap.add_argument("--report-only", action="store_true", help="redraw figures and tables from OUT/runs")
    a = ap.parse_args(argv)
    sz = SMOKE if a.smoke else FULL
    mode = "smoke" if a.smoke else "full"
    out = Path(a.out) if a.out else (HERE / "runs" / "smoke" if a.smoke else HERE)
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs" if out != HERE else HERE / "runs" / "full"
    jobs = jobs_of(sz)
    commands = {name: (ov, sub) for part in jobs.values() for name, ov, sub in part}
    t0 = time.perf_counter()
    seconds, total, load = {}, None, {}
    if not a.report_only:
        seconds = train_all(sz, runs, a.parallel or (2 if a.smoke else 1))
        total = time.perf_counter() - t0
        load = dict(LOAD)
    elif (out / "results.json").exists():
        old = json.loads((out / "results.json").read_text())
        seconds, total, load = old.get("seconds", {}), old.get("total_s"), old.get("load_average", {})
    res = {"mode": mode, "sizes": sz,
           "echo": echo_part(runs, sz), "adding": adding_part(runs),
           "k1cost": k1cost_part(runs, sz["k1cost"]["target"]),
           "text": text_part(runs), "throughput": throughput_part(runs), "seconds": seconds, "total_s": total,
           "load_average": load, "cpus": os.cpu_count(),
           "commands": {k: v[0] for k, v in commands.items()}}
    res["figures"] = figures(res, out)
    (out / "results.md").write_text(tables(res, commands, seconds, total, mode, load))
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    print(f"[study] wrote {out / 'results.md'}, results.json and {', '.join(res['figures'])}"
          + (f"; {total:.0f} s" if total else ""))
    return res


if __name__ == "__main__":
    main()
