"""Successive halving against the full population it starts from: training wall time
(summary.json wall_time_s, compilation included) and the pick, at the search study's
setting (study.py FULL: echo length 1000, 8 streams, hidden 32, 16 drawn members, a rung
every 2 of 8 epochs, keep 0.5).

Per seed, two rounds, each a full-population run then a halving run of that seed (one
process each, interleaved so that drifting load falls on both):
  cold   JAXDL_COMPILE_CACHE=off: every program compiles
  warm   a persistent compilation cache (jaxdl.search.cache) that holds the programs: a
         fresh one, filled by an untimed full + halving pair (seed 100) before the seeds
Halving trains with the default population.group=auto (on CPU: groups of the last
rung's member count, 2, through one program). Also the whole command's time (process
start to exit: imports, data, every compile, evaluations, checkpoints).

    ./launch.sh py experiments/search/bench_halving.py   # runs/bench_halving/results.md (bench_halving.md: the last)
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from study import FULL, LR, FB  # noqa: E402

POP = [f"population.optim.lr={LR}", f"population.model.forget_bias={FB}", "population.samples=16"]
HALVING = ["population.schedule=halving", "population.every=2", "population.keep=0.5"]


def run(out: Path, name: str, seed: int, cache: str, halving: bool) -> dict:
    d = out / "runs" / name / ("halving" if halving else "full") / f"seed{seed}"
    shutil.rmtree(d, ignore_errors=True)
    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu", "JAXDL_COMPILE_CACHE": cache}
    cmd = [sys.executable, "-m", "jaxdl.main", *FULL["task"], "train.epochs=8", *POP, *(HALVING if halving else []),
           "logger.mode=disabled", "train.progress=false", "train.checkpoint_every=1", f"seed={seed}",
           f"hydra.run.dir={d}"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    command_s = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    s = json.loads((d / "summary.json").read_text())
    return {"wall_s": s["wall_time_s"], "command_s": command_s, "pick": s["selection"]["member"],
            "val": s["selection"]["val"], "group": s.get("search", {}).get("group")}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(HERE / "runs" / "bench_halving"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    cache = out / "xla-cache"
    shutil.rmtree(cache, ignore_errors=True)
    load = open("/proc/loadavg").read().split()[:3]
    run(out, "fill", 100, str(cache), False)
    run(out, "fill", 100, str(cache), True)
    rows = []
    for seed in a.seeds:
        for name, c in (("cold", "off"), ("warm", str(cache))):
            f, h = run(out, name, seed, c, False), run(out, name, seed, c, True)
            rows.append({"round": name, "seed": seed, "full": f, "halving": h, "ratio": h["wall_s"] / f["wall_s"],
                         "command_ratio": h["command_s"] / f["command_s"],
                         "same_pick": f["pick"] == h["pick"] and abs(f["val"] - h["val"]) < 1e-3})
            print(rows[-1], flush=True)
    end = open("/proc/loadavg").read().split()[:3]
    lines = ["# Halving against the full population (search study setting)", "",
             f"{' '.join(FULL['task'][1:])}, 16 members, rung every 2 of 8 epochs, keep 0.5, halving in groups of "
             f"{rows[0]['halving']['group']}; loaded 2-core CPU (load {' '.join(load)} at the start, "
             f"{' '.join(end)} at the end). Wall: summary.json wall_time_s (training incl. the training "
             "program's compilation); command: the process from start to exit.", "",
             "| round | seed | full s | halving s | halving / full | command: full s | halving s | halving / full "
             "| same pick (member, val) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, h = r["full"], r["halving"]
        lines.append(f"| {r['round']} | {r['seed']} | {f['wall_s']:.1f} | {h['wall_s']:.1f} | {r['ratio']:.2f} | "
                     f"{f['command_s']:.1f} | {h['command_s']:.1f} | {r['command_ratio']:.2f} | "
                     f"{r['same_pick']} (member {h['pick']}) |")
    lines.append("")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return {"rows": rows}


if __name__ == "__main__":
    main()
