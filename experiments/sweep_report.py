"""A markdown table of a sweep, read from its run directories only (no wandb needed); the
table and the selection are jaxdl.report's (`python -m jaxdl.report DIR` also draws the
figures and writes report.md).

    ./launch.sh py experiments/sweep_report.py multirun/<date_time> [--metric test/accuracy]

One row per config (the override set without seed=, pooled over seeds and replicas; a
population's members split by their values), with n and the mean, std and 95% interval of
the val and the test metric (default: the runs' headline); the config selected on val is
marked.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from jaxdl.report.build import from_groups
from jaxdl.report.collect import collect as collect_runs
from jaxdl.report.markdown import config_table, selection_text


def collect(sweep_dir: Path, metric: str | None):
    """{config: [members]} of the runs under sweep_dir; a config is a tuple of (key, value)
    overrides without seed=. `metric` must exist in the runs (None: their headline)."""
    groups, _ = collect_runs([sweep_dir])
    if metric is not None and not any(metric in m.final for ms in groups.values() for m in ms):
        raise SystemExit(f"no run under {sweep_dir} has a final {metric!r}")
    return groups


def table(groups, metric: str | None = None) -> str:
    """Two header lines, then one row per config (each row names the metric)."""
    return config_table(from_groups(groups, metric), metric_column=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--metric", default=None)
    a = ap.parse_args(argv)
    groups = collect(Path(a.sweep_dir), a.metric)
    if not groups:
        raise SystemExit(f"no run directories with summary.json under {a.sweep_dir}")
    rep = from_groups(groups, a.metric, [a.sweep_dir])
    out = config_table(rep, metric_column=True) + "\n\nSelected: " + selection_text(rep)
    print(out)
    return out


if __name__ == "__main__":
    main()
