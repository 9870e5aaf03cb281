"""The default job (echo, TBPTT(10, 20), hidden 64) against variants of it, in one run:
each variant is a fresh `python -m jaxdl.main` process with its overrides, the variants
interleaved round by round so that machine noise falls on all of them alike. Reports the
member-updates per second of the timed epochs (summary.json's updates_per_s; the first
epoch, which compiles, is not timed), each as a ratio to the first variant, and the test
accuracy each reached.

    ./launch.sh py experiments/bench_default_job.py --rounds 2 \
        --variant "" --variant "model=gru" --variant "model=rnn"
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(overrides: list[str], run_dir: Path) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "jaxdl.main", *overrides, "train.progress=false", "logger.mode=disabled",
           f"hydra.run.dir={run_dir}"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(overrides) or '(default)'} failed:\n{p.stderr[-3000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=None,
                    help='space-separated overrides of one variant ("" = the default job); repeat')
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--common", default="", help="overrides added to every variant")
    args = ap.parse_args()
    variants = args.variant or [""]
    common = args.common.split()
    rates: dict[str, list[float]] = {v: [] for v in variants}
    acc: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, v in enumerate(variants):
                s = run_once(common + v.split(), Path(tmp) / f"{r}_{i}")
                rates[v].append(s["updates_per_s"])
                acc[v].append(s["final"].get(s["headline"], float("nan")))
    load = os.getloadavg()[0]
    base = statistics.median(rates[variants[0]])
    print(f"load average {load:.1f}; {args.rounds} rounds, interleaved; member-updates/s of the timed epochs")
    print(f"{'variant':40s} {'updates/s (median)':>18s} {'ratio':>7s} {'headline':>9s}")
    for v in variants:
        med = statistics.median(rates[v])
        print(f"{(v or '(default job)'):40s} {med:18.1f} {med / base:7.2f} {statistics.median(acc[v]):9.4f}")


if __name__ == "__main__":
    main()
