"""A markdown table of a sweep, read from its run directories only (no wandb needed).

    ./launch.sh py experiments/sweep_report.py multirun/<date_time> [--metric test/accuracy]

One row per distinct override set (seed= overrides are pooled: mean +- std over seeds),
columns: the overrides, the number of runs, the final and best value of the metric
(default: each run's headline metric), wall time.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml


def collect(sweep_dir: Path, metric: str | None):
    groups = defaultdict(list)
    for d in sorted(p for p in Path(sweep_dir).iterdir() if (p / "summary.json").exists()):
        s = json.loads((d / "summary.json").read_text())
        ov = yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) or []
        key = tuple(o for o in ov if not o.startswith("seed=") and not o.startswith("hydra."))
        m = metric or s.get("headline") or "train/loss"
        groups[key].append((s["final"].get(m), s["best"].get(m), s.get("wall_time_s"), m))
    return groups


def table(groups) -> str:
    fmt = lambda xs: (f"{statistics.mean(xs):.4f}" + (f" ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else "")
                      if xs else "-")
    lines = ["| overrides | metric | runs | final | best | wall s |", "|---|---|---|---|---|---|"]
    for key, rows in sorted(groups.items()):
        fin = [r[0] for r in rows if r[0] is not None]
        best = [r[1] for r in rows if r[1] is not None]
        wall = [r[2] for r in rows if r[2] is not None]
        lines.append(f"| {' '.join(key) or '(defaults)'} | {rows[0][3]} | {len(rows)} | {fmt(fin)} | "
                     f"{fmt(best)} | {statistics.mean(wall):.1f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--metric", default=None)
    a = ap.parse_args(argv)
    groups = collect(Path(a.sweep_dir), a.metric)
    if not groups:
        raise SystemExit(f"no run directories with summary.json under {a.sweep_dir}")
    out = table(groups)
    print(out)
    return out


if __name__ == "__main__":
    main()
