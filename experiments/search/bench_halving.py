"""Successive halving against the full population it starts from: training wall time
(summary.json wall_time_s, compilation included) and the pick, at the search study's
setting (study.py FULL: echo length 1000, 8 streams, hidden 32, 16 drawn members, a rung
every 2 of 8 epochs, keep 0.5).

Rounds, each a full-population run then a halving run of the same seed (one process
each, interleaved so that drifting load falls on both):
  cold   JAXDL_COMPILE_CACHE=off: every program compiles (rungs compile ahead on a thread)
  cache  a fresh persistent compilation cache (jaxdl.search.cache) shared by the rounds:
         the first seed's runs fill it, the later seeds (same shapes) load from it

    ./launch.sh py experiments/search/bench_halving.py   # runs/bench_halving/results.md (bench_halving.md: the last)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
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
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    s = json.loads((d / "summary.json").read_text())
    return {"wall_s": s["wall_time_s"], "pick": s["selection"]["member"], "val": s["selection"]["val"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(HERE / "runs" / "bench_halving"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    cache = out / "xla-cache"
    shutil.rmtree(cache, ignore_errors=True)
    load = open("/proc/loadavg").read().split()[:3]
    rows = []
    for name, c, seeds in (("cold", "off", a.seeds[:1]), ("cache", str(cache), a.seeds)):
        for seed in seeds:
            f, h = run(out, name, seed, c, False), run(out, name, seed, c, True)
            rows.append({"round": name, "seed": seed, "full": f, "halving": h, "ratio": h["wall_s"] / f["wall_s"],
                         "same_pick": f["pick"] == h["pick"] and abs(f["val"] - h["val"]) < 1e-3})
            print(rows[-1], flush=True)
    lines = ["# Halving against the full population (search study setting)", "",
             f"{' '.join(FULL['task'][1:])}, 16 members, rung every 2 of 8 epochs, keep 0.5; loaded 2-core CPU "
             f"(load {' '.join(load)}). Wall: summary.json wall_time_s (training incl. compilation).", "",
             "| round | seed | full s | halving s | halving / full | same pick (member, val) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['seed']} | {r['full']['wall_s']:.1f} | {r['halving']['wall_s']:.1f} | "
                     f"{r['ratio']:.2f} | {r['same_pick']} (member {r['halving']['pick']}) |")
    lines.append("")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return {"rows": rows}


if __name__ == "__main__":
    main()
