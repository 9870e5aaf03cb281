"""jaxdl's TBPTT workload under variants of the environment (XLA_FLAGS, a checkout on
PYTHONPATH), in one run: each (variant, round) is a fresh worker process of
experiments/bench_tbptt_workload.py, the variants interleaved round by round so that the
machine's load falls on all of them alike. Prints updates/s and updates per CPU-second
(medians over rounds) and each as a ratio to the first variant.

    python experiments/bench_xla_flags.py --workload textgen --rounds 3 \
        --variant "" --variant "XLA_FLAGS=--xla_cpu_multi_thread_eigen=false"

A variant is space-separated NAME=VALUE assignments added to the environment ("" = as is);
PYTHONPATH=/path/to/other/checkout measures another checkout's jaxdl with the same worker.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_tbptt_workload import updates_per_s  # noqa: E402


def parse_variant(v: str) -> dict:
    """'A=1 B=x y' -> {'A': '1', 'B': 'x y'}: a new NAME= starts each assignment."""
    env, key = {}, None
    for tok in v.split():
        name, eq, val = tok.partition("=")
        if eq and name.isidentifier() and name.upper() == name:
            key = name
            env[key] = val
        elif key is None:
            raise SystemExit(f"variant {v!r}: expected NAME=VALUE assignments, "
                             "e.g. XLA_FLAGS=--xla_cpu_use_onednn=true")
        else:
            env[key] += " " + tok
    return env


def run_variant(env: dict, workload: str, epochs: int, text_chars: int) -> dict:
    cmd = [sys.executable, str(HERE / "bench_tbptt_workload.py"), "--worker", f"jaxdl:{workload}",
           "--epochs", str(epochs), "--text-chars", str(text_chars)]
    out = subprocess.run(cmd, env={**os.environ, **env}, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=None, help='NAME=VALUE ... ("" = as is); repeat')
    ap.add_argument("--workload", default="textgen", choices=["echo", "textgen"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per worker (the first, which compiles, is not timed)")
    ap.add_argument("--text-chars", type=int, default=40_000)
    a = ap.parse_args(argv)
    variants = a.variant or [""]
    envs = [parse_variant(v) for v in variants]
    rates = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    print(f"{a.workload}, {a.rounds} interleaved rounds, {a.epochs} epochs a worker; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for _ in range(a.rounds):
        for v, env in zip(variants, envs):
            r = run_variant(env, a.workload, a.epochs, a.text_chars)
            rates[v].append(updates_per_s(r))
            cpu[v].append(updates_per_s(r, "epoch_cpu_s"))
    base, base_cpu = statistics.median(rates[variants[0]]), statistics.median(cpu[variants[0]])
    print(f"{'variant':60s} {'updates/s':>9s} {'ratio':>6s} {'per CPU-s':>9s} {'ratio':>6s}  per round")
    res = {}
    for v in variants:
        m, c = statistics.median(rates[v]), statistics.median(cpu[v])
        print(f"{(v or '(as is)')[:60]:60s} {m:9.2f} {m / base:6.2f} {c:9.2f} {c / base_cpu:6.2f}  "
              + " ".join(f"{x:.2f}" for x in rates[v]))
        res[v] = {"updates_per_s": m, "per_cpu_s": c, "rounds": rates[v]}
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return res


if __name__ == "__main__":
    main()
