"""A pruned Optuna sweep against the same sweep unpruned: epochs trained and best val.

conf/hparams_search/echo_optuna_pruned.yaml (16 TPE trials over model.hidden and optim.lr,
12 epochs each, the median pruner after 4 trials) at a smaller echo size, once with
`hydra.sweeper.pruner=none` and once as is, for each sampler seed; the two sweeps of a
seed run one after the other (interleaved, so drifting load falls on both). Everything
is read from the sweep dirs: each trial's summary.json (epochs_run) and trials.json
(states, values). The unpruned sweeps' best val over the seeds is the spread the pruned
sweeps' best val is compared with.

    ./launch.sh py experiments/search/bench_pruning.py                 # 3 seeds (about 40 min on 2 loaded cores)
    ./launch.sh py experiments/search/bench_pruning.py --seeds 1 --trials 4 --out /tmp/p   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TASK = ["task.length=500", "task.streams=8", "task.test_length=500", "task.val_length=500"]


def sweep(out: Path, pruned: bool, seed: int, trials: int) -> dict:
    d = out / "runs" / ("pruned" if pruned else "unpruned") / f"seed{seed}"
    shutil.rmtree(d, ignore_errors=True)
    cmd = [sys.executable, "-m", "jaxdl.main", "-m", "hparams_search=echo_optuna_pruned",
           f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.n_trials={trials}", *TASK,
           "logger.mode=disabled", "train.progress=false", f"hydra.sweep.dir={d}"]
    if not pruned:
        cmd += ["hydra.sweeper.pruner=none", "hydra.sweeper.pruner_kwargs=null"]
    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"sweep failed:\n{p.stderr[-3000:]}")
    rec = json.loads((d / "trials.json").read_text())
    runs = [json.loads(s.read_text()) for s in d.glob("*/summary.json")]
    done = [t["value"] for t in rec["trials"] if t["state"] == "COMPLETE"]
    return {"seed": seed, "wall_s": wall, "epochs": sum(r["epochs_run"] for r in runs),
            "epochs_full": sum(r["epochs"] for r in runs), "trials": len(rec["trials"]),
            "pruned": sum(t["state"] == "PRUNED" for t in rec["trials"]), "best_val": max(done)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--out", default=str(HERE / "runs" / "bench_pruning"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    res = {"unpruned": [], "pruned": []}
    for seed in a.seeds:
        for pruned in (False, True):
            r = sweep(out, pruned, seed, a.trials)
            res["pruned" if pruned else "unpruned"].append(r)
            print(("pruned  " if pruned else "unpruned"), r, flush=True)
    ratio = [p["epochs"] / u["epochs"] for p, u in zip(res["pruned"], res["unpruned"])]
    ub = [u["best_val"] for u in res["unpruned"]]
    res.update(load=" ".join(load), epoch_ratio=ratio, unpruned_spread=[min(ub), max(ub)])
    lines = ["# Pruned vs unpruned Optuna sweep (echo)", "",
             f"`hparams_search=echo_optuna_pruned` at {' '.join(TASK)}, {a.trials} trials of 12 epochs, sampler "
             f"seeds {a.seeds}; loaded 2-core CPU (load {' '.join(load)}).", "",
             "| sampler seed | epochs unpruned | epochs pruned | ratio | trials pruned | best val unpruned | "
             "best val pruned | wall unpruned s | wall pruned s |", "|---|---|---|---|---|---|---|---|---|"]
    for u, p, r in zip(res["unpruned"], res["pruned"], ratio):
        lines.append(f"| {u['seed']} | {u['epochs']} | {p['epochs']} | {r:.2f} | {p['pruned']}/{p['trials']} | "
                     f"{u['best_val']:.4f} | {p['best_val']:.4f} | {u['wall_s']:.0f} | {p['wall_s']:.0f} |")
    pb = [p["best_val"] for p in res["pruned"]]
    lines += ["", f"epochs pruned / unpruned: median {np.median(ratio):.2f} (target <= 0.60); best val pruned "
                  f"{', '.join(f'{v:.4f}' for v in pb)} against the unpruned seeds' spread "
                  f"[{min(ub):.4f}, {max(ub):.4f}]", ""]
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
