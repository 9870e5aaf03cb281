"""Grid vs random vs successive halving vs PBT at equal compute, on the echo task.

Each method trains a population over optim.lr (and model.forget_bias) inside one
compiled program, 3 seeds each, with about the same member-epochs (the compute):

    grid     4 lr x 2 forget_bias, 8 members x E epochs                    = 8E
    random   8 members drawn (lr log-uniform, forget_bias uniform) x E      = 8E
    halving  16 drawn members, keep 0.5 every E/4 epochs: 16+8+4+2 rungs   = 7.5E
    pbt      8 drawn members, truncate 0.25, perturb [0.8, 1.25] every E/4 = 8E

and the full population the halving run starts from (16 drawn members, E epochs, no
schedule: 16E) once per seed, for halving's wall time against it. The study reads only
the run dirs (summary.json, metrics.jsonl, progress.json) and writes results.json,
results.md and best_val_vs_wall.png. Nothing is selected on test: each run's pick is
its selection on val (summary.json "selection"), whose test value is reported.

    ./launch.sh py experiments/search/study.py                  # the study (about 10 min on 2 cores)
    ./launch.sh py experiments/search/study.py --smoke --out /tmp/s   # tiny sizes (CI)
    ./launch.sh py experiments/search/study.py --report-only          # the tables and figure from runs/
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
sys.path.insert(0, str(ROOT))          # run as a script: jaxdl from this checkout
QUIET = ["logger.mode=disabled", "train.progress=false", "train.checkpoint_every=1"]
LR = "{loguniform:[0.0003,0.3]}"
FB = "{uniform:[0.0,2.0]}"

FULL = {"seeds": [0, 1, 2], "epochs": 8, "every": 2, "n": 8, "lrs": [0.001, 0.01, 0.03, 0.1],
        "task": ["task=echo", "task.length=1000", "task.streams=8", "task.test_length=1000", "model.hidden=32"]}
SMOKE = {"seeds": [0], "epochs": 2, "every": 1, "n": 2, "lrs": [0.003, 0.03],
         "task": ["task=echo", "task.length=100", "task.streams=2", "task.test_length=100", "model.hidden=8"]}


def methods(sz: dict) -> dict[str, list[str]]:
    """method -> its population overrides (n members; halving and full16 start from 2n)."""
    e, n = str(sz["every"]), sz["n"]
    lrs = ",".join(map(str, sz["lrs"]))
    fbs = "[0.0,1.0]" if n == 2 * len(sz["lrs"]) else "[1.0]"
    return {
        "grid": [f"population.optim.lr=[{lrs}]", f"population.model.forget_bias={fbs}"],
        "random": [f"population.optim.lr={LR}", f"population.model.forget_bias={FB}", f"population.samples={n}"],
        "halving": [f"population.optim.lr={LR}", f"population.model.forget_bias={FB}", f"population.samples={2 * n}",
                    "population.schedule=halving", f"population.every={e}", "population.keep=0.5"],
        "pbt": [f"population.optim.lr={LR}", f"population.model.forget_bias={FB}", f"population.samples={n}",
                "population.schedule=pbt", f"population.every={e}", f"population.truncate={max(0.25, 1 / n)}"],
        "full16": [f"population.optim.lr={LR}", f"population.model.forget_bias={FB}", f"population.samples={2 * n}"],
    }


def train(sz: dict, runs: Path) -> dict[str, float]:
    """Every method's run of a seed, then the next seed (methods interleaved, so load that
    drifts falls on all of them); one process per run. -> process seconds per method."""
    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    seconds: dict[str, float] = {}
    for seed in sz["seeds"]:
        for name, pop in methods(sz).items():
            run_dir = runs / name / f"seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)       # a run dir left from before would resume
            cmd = [sys.executable, "-m", "jaxdl.main", *sz["task"], f"train.epochs={sz['epochs']}", *pop, *QUIET,
                   f"seed={seed}", f"hydra.run.dir={run_dir}"]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            if p.returncode:
                raise SystemExit(f"{name} seed {seed} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return seconds


def curve(run_dir: Path, by: str, higher: bool) -> list[tuple[float, float]]:
    """[(wall s at the end of epoch e, best val over the members evaluated so far)]."""
    from jaxdl.search.report import best_so_far
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return best_so_far(rows, by, higher, json.loads((run_dir / "progress.json").read_text()))


def collect(sz: dict, runs: Path) -> dict:
    """Every number of the study, from the run dirs."""
    res = {}
    for name in methods(sz):
        per = []
        for seed in sz["seeds"]:
            d = runs / name / f"seed{seed}"
            s = json.loads((d / "summary.json").read_text())
            sel = s["selection"]
            members = s["members"]
            epochs = s["epochs"]
            member_epochs = sum(epochs if m.get("stopped_at") is None else m["stopped_at"] for m in members)
            per.append({"seed": seed, "val": sel["val"], "test": sel["test"], "wall_s": s["wall_time_s"],
                        "members": len(members), "member_epochs": member_epochs, "hparams": sel["hparams"],
                        "hp_final": sel.get("hp_final"), "curve": curve(d, sel["by"], s["higher_is_better"])})
        res[name] = {"runs": per, **{k: {"mean": float(np.mean([r[k] for r in per])),
                                         "std": float(np.std([r[k] for r in per]))}
                                     for k in ("val", "test", "wall_s", "member_epochs")}}
    res["halving_vs_full16_wall"] = [h["wall_s"] / f["wall_s"] for h, f in
                                     zip(res["halving"]["runs"], res["full16"]["runs"])]
    return res


def figure(res: dict, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(["grid", "random", "halving", "pbt", "full16"]):
        for j, r in enumerate(res[name]["runs"]):
            xs, ys = zip(*[(w, v) for w, v in r["curve"] if v is not None])
            ax.plot(xs, ys, color=f"C{i}", alpha=0.8, label=name if j == 0 else None, marker=".")
    ax.set_xlabel("wall time (s, training incl. compilation)")
    ax.set_ylabel("best val accuracy so far")
    ax.set_title("echo: best val against wall time, 3 seeds per method")
    ax.legend()
    fig.tight_layout()
    path = out / "best_val_vs_wall.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(res: dict, seconds: dict, sz: dict, load: str) -> str:
    lines = ["# Search study: results", "",
             f"echo ({' '.join(sz['task'][1:])}), {sz['epochs']} epochs, seeds {sz['seeds']}; load: {load}", "",
             "| method | members | member-epochs | best val (selected on val) | its test | wall s (training) |",
             "|---|---|---|---|---|---|"]
    for name in ["grid", "random", "halving", "pbt", "full16"]:
        r = res[name]
        lines.append(f"| {name} | {r['runs'][0]['members']} | {r['member_epochs']['mean']:.0f} | "
                     f"{r['val']['mean']:.4f} ± {r['val']['std']:.4f} | {r['test']['mean']:.4f} ± "
                     f"{r['test']['std']:.4f} | {r['wall_s']['mean']:.1f} ± {r['wall_s']['std']:.1f} |")
    ratios = res["halving_vs_full16_wall"]
    lines += ["", f"halving (16 members, keep 0.5) against the full 16-member population, wall time per seed "
                  f"(same drawn members, runs interleaved with the other methods in one study run): "
                  f"{', '.join(f'{x:.2f}' for x in ratios)}", "",
              "process seconds per method (all seeds, incl. start-up): "
              + (", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) or "not measured (--report-only)"), ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one seed (CI)")
    ap.add_argument("--out", default=None, help="where results and runs/ go (default: experiments/search)")
    ap.add_argument("--report-only", action="store_true", help="read the existing OUT/runs, train nothing")
    a = ap.parse_args(argv)
    sz = SMOKE if a.smoke else FULL
    out = Path(a.out) if a.out else HERE
    runs = out / "runs"
    out.mkdir(parents=True, exist_ok=True)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    if a.report_only:
        load = ["not measured (--report-only: the load while training is in README.md)"]
    seconds = {} if a.report_only else train(sz, runs)
    res = collect(sz, runs)
    res["seconds"], res["load"] = seconds, " ".join(load)
    figure(res, out)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(table(res, seconds, sz, " ".join(load)))
    print((out / "results.md").read_text())
    return res


if __name__ == "__main__":
    main()
