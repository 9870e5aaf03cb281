"""report.md: what was read, the selected config, the table of configs (mean, std, 95%
interval and n over seeds, for the val and the test metric) and the figures."""
from __future__ import annotations

import math
import os
from pathlib import Path

from jaxdl.report.build import Report
from jaxdl.report.stats import LEVEL, Stats


def num(x: float) -> str:
    """A table number: 4 significant digits; '-' for none."""
    return "-" if x is None or math.isnan(x) else f"{x:.4g}"


def interval(s: Stats) -> str:
    return "-" if math.isnan(s.lo) else f"[{num(s.lo)}, {num(s.hi)}]"


def mean_std(s: Stats) -> str:
    return num(s.mean) + ("" if math.isnan(s.std) else f" ± {num(s.std)}")


def config_table(report: Report, metric_column: bool = False) -> str:
    """One row per config: label, n, then mean, std and 95% interval of the val metric and of
    the test metric. The selected config is marked. `metric_column` adds the test metric's
    name to every row (experiments/sweep_report.py's layout)."""
    v, t = report.val_metric, report.metric
    head = ["config", *(["metric"] if metric_column else []), "n",
            f"{v} mean", "std", f"{LEVEL:.0%} interval", f"{t} mean", "std", f"{LEVEL:.0%} interval"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in report.configs:
        sv, st = c.stats[v], c.stats[t]
        label = report.label(c)
        label = f"**{label}** (selected)" if c is report.selected else label
        cells = [label, *([t] if metric_column else []), str(st.n if st.n else sv.n),
                 num(sv.mean), num(sv.std), interval(sv), num(st.mean), num(st.std), interval(st)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selection_text(report: Report) -> str:
    direction = "highest" if report.higher_is_better else "lowest"
    c = report.selected
    if c is None:
        return f"No config is selected: {report.no_selection}"
    sv, st = c.stats[report.val_metric], c.stats[report.metric]
    ci = f", {LEVEL:.0%} interval {interval(st)}" if st.n > 1 else ""
    return (f"**{report.label(c)}**: the {direction} mean `{report.val_metric}` over its {sv.n} seed(s), "
            f"{mean_std(sv)}. Its `{report.metric}`: {mean_std(st)}{ci} (n = {st.n}).\n\n"
            f"Selected on `{report.val_metric}` (validation, held out from the training data) only; the test "
            f"value is reported for the selected config and is never used to choose it.")


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def render(report: Report, figures: dict[str, Path], out_dir: Path, command: str | None = None) -> str:
    """The whole report.md; figure paths are written relative to out_dir."""
    n_members = sum(len(c.members) for c in report.configs)
    n_runs = len({m.run for c in report.configs for m in c.members})
    direction = "higher" if report.higher_is_better else "lower"
    srcs = ", ".join(f"`{p}`" for p in report.sources)
    text = [f"# Report: {report.task or 'runs'}", ""]
    if command:
        text += [f"Made by `{command}` from the run directories alone (summary.json, metrics.jsonl, "
                 f".hydra/overrides.yaml).", ""]
    text += [f"Read {n_runs} run(s) under {srcs}: {n_members} trained member(s) in {len(report.configs)} "
             f"config(s). Metric: `{report.metric}` ({direction} is better); selection reads "
             f"`{report.val_metric}`.", ""]
    if report.axes:
        text += ["Swept: " + ", ".join(f"`{a}`" for a in report.axes) + ".", ""]
    if report.fixed:
        text += ["The same in every config: " + " ".join(f"`{k}={v}`" for k, v in report.fixed.items()) + ".", ""]
    if report.unfinished:
        text += ["Not read (no summary.json: still running or failed): "
                 + ", ".join(f"`{_rel(p, out_dir)}`" for p in report.unfinished) + ".", ""]
    if report.in_progress:
        from jaxdl.run.lock import describe
        text += ["In progress (a live process holds run.lock; the values shown are those written so far, a "
                 "summary.json there is of an earlier launch): "
                 + ", ".join(f"`{_rel(p, out_dir)}` ({describe(h)})" for p, h in report.in_progress) + ".", ""]
    if report.unreadable:
        text += ["Left out, cannot be read: " + "; ".join(f"`{_rel(p, out_dir)}`: {why}"
                                                         for p, why in report.unreadable) + ".", ""]
    for p, launches in report.amended:
        segs = "; ".join(f"epochs {(s.get('from_epoch') or 0) + 1}-{s.get('to_epoch')}"
                         + (" with " + ", ".join(f"{k}={v[1]}" for k, v in s["changed"].items()) if s.get("changed")
                            else "") for s in launches)
        text += [f"Trained in {len(launches)} launches with changed settings (train.resume=amend): "
                 f"`{_rel(p, out_dir)}`: {segs}.", ""]
    if report.pruned:
        text += ["Pruned by the Optuna study (a result: its values are those of the epoch it stopped at): "
                 + ", ".join(f"`{_rel(p, out_dir)}` pruned after epoch {e} of {n}" for p, e, n in report.pruned)
                 + ".", ""]
    text += ["## Selected config", "", selection_text(report), ""]
    text += [f"Note: {n}" for n in report.notes] + ([""] if report.notes else [])
    text += ["## Configs", "", config_table(report), "",
             f"Final-epoch values. Over the seeds of each config (members with the same values and "
             f"different seeds or replicas): mean, std (sample, n - 1), {LEVEL:.0%} interval = mean ± "
             f"t(0.975, n - 1) · std / √n, and n; '-' where n < 2.", ""]
    captions = {"heatmap": f"Mean over seeds on the two swept axes: `{report.val_metric}` (selection) and "
                           f"`{report.metric}`; the selected cell is outlined in red.",
                "against": f"Mean `{report.val_metric}` and `{report.metric}` against "
                           f"`{report.axes[0] if report.axes else ''}`, bars: {LEVEL:.0%} interval.",
                "curves": "Learning curves per config: mean over seeds, band ± 1 std."}
    if figures:
        text += ["## Figures", ""]
        for name in ("heatmap", "against", "curves"):
            if figures.get(name):
                text += [f"![{name}]({_rel(figures[name], out_dir)})", "", captions[name], ""]
    return "\n".join(text)
