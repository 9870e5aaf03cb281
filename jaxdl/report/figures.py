"""The report's PNG figures (matplotlib, Agg backend: no display needed): learning curves
per config (mean over seeds, band = +- one standard deviation), a heatmap when two axes are
swept, the metric against the axis when one is."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from jaxdl.report.build import Report, axis_order  # noqa: E402
from jaxdl.report.stats import Stats, curve_band  # noqa: E402

OVERLAY_MAX = 8          # up to this many configs share one axes; more get a panel each


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _curves(config, metric: str) -> list[dict[float, float]]:
    """One {epoch: value} per member of the config (rows without the metric skipped)."""
    return [{float(r["epoch"]): float(r[metric]) for r in m.curve if r.get(metric) is not None and "epoch" in r}
            for m in config.members]


def curve_metrics(report: Report) -> list[str]:
    """What the learning curves show: train loss and the validation metric (the test metric
    where the runs have no validation split)."""
    have = {k for c in report.configs for m in c.members for r in m.curve for k in r}
    return [k for k in ("train/loss", report.val_metric if report.val_metric in have else report.metric)
            if k in have]


def _band(ax, curves, color, label, lw=1.6):
    e, mean, std, n = curve_band(curves)
    ax.plot(e, mean, color=color, lw=lw, label=label)
    if n.max(initial=0) > 1:
        ax.fill_between(e, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def learning_curves(report: Report, path: Path) -> Path | None:
    """Curves of curve_metrics per config; the selected config drawn bold."""
    metrics = curve_metrics(report)
    if not metrics:
        return None
    cs = report.configs
    n_seeds = sorted({len(c.members) for c in cs})
    seeds = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"
    note = f"mean over {seeds} seed(s); band: ± 1 std"
    if len(cs) <= OVERLAY_MAX:
        fig, axs = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
        colors = plt.get_cmap("tab10")
        for ax, metric in zip(axs[0], metrics):
            for i, c in enumerate(cs):
                sel = c is report.selected
                _band(ax, _curves(c, metric), colors(i % 10), report.label(c) + ("  (selected)" if sel else ""),
                      lw=2.8 if sel else 1.4)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        axs[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
        fig.suptitle(f"{report.task or ''} learning curves ({note})", fontsize=10)
        return _save(fig, path)
    metric = metrics[-1]
    if len(report.axes) == 2:           # panels on the grid of the two axes, as the heatmap
        a, b = _grid_axes(report)
        ys, xs = (axis_order([c.values.get(k, "(default)") for c in cs]) for k in (a, b))
        rows, cols = len(ys), len(xs)
        where = [ys.index(c.values.get(a, "(default)")) * cols + xs.index(c.values.get(b, "(default)")) for c in cs]
    else:
        cols = math.ceil(math.sqrt(len(cs)))
        rows = math.ceil(len(cs) / cols)
        where = list(range(len(cs)))
    fig, axs = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), sharex=True, sharey=True, squeeze=False,
                            layout="constrained")
    used = set(where)
    for k, ax in enumerate(axs.flat):
        ax.set_visible(k in used)
    for k, c in zip(where, cs):
        ax = axs.flat[k]
        sel = c is report.selected
        _band(ax, _curves(c, metric), "tab:red" if sel else "tab:blue", None)
        ax.set_title(report.label(c) + (" (selected)" if sel else ""), fontsize=7,
                     fontweight="bold" if sel else "normal")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel(metric, fontsize=9)
    fig.suptitle(f"{report.task or ''} {metric} per config ({note})", fontsize=10)
    return _save(fig, path)


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.3g}"


def _grid_axes(report: Report) -> tuple[str, str]:
    """(rows' axis, columns' axis) of two swept axes: the columns get the one with more values."""
    a, b = sorted(report.axes, key=lambda k: len({c.values.get(k, "(default)") for c in report.configs}))
    return a, b


def heatmap(report: Report, path: Path) -> Path | None:
    """Two swept axes: the mean over seeds of the val metric and of the test metric on the
    grid (x: the axis with more values); the selected cell outlined."""
    if len(report.axes) != 2:
        return None
    a, b = _grid_axes(report)
    ys = axis_order([c.values.get(a, "(default)") for c in report.configs])
    xs = axis_order([c.values.get(b, "(default)") for c in report.configs])
    panels = [m for m in (report.val_metric, report.metric)
              if any(c.stats[m].n for c in report.configs)]
    fig, axs = plt.subplots(1, len(panels), figsize=(0.9 * len(xs) * len(panels) + 2.6 * len(panels),
                                                       0.6 * len(ys) + 1.8), squeeze=False)
    cmap = "viridis" if report.higher_is_better else "viridis_r"
    for ax, metric in zip(axs[0], panels):
        grid = np.full((len(ys), len(xs)), np.nan)
        ns = np.zeros((len(ys), len(xs)), int)
        for c in report.configs:
            i, j = ys.index(c.values.get(a, "(default)")), xs.index(c.values.get(b, "(default)"))
            grid[i, j], ns[i, j] = c.stats[metric].mean, c.stats[metric].n
        im = ax.imshow(grid, cmap=cmap, aspect="auto", origin="lower")
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for i in range(len(ys)):
            for j in range(len(xs)):
                if not np.isnan(grid[i, j]):
                    bright = (grid[i, j] - lo) / ((hi - lo) or 1)
                    bright = bright if report.higher_is_better else 1 - bright
                    ax.text(j, i, _fmt(grid[i, j]), ha="center", va="center", fontsize=8,
                            color="black" if bright > 0.6 else "white")
        if report.selected is not None:
            i = ys.index(report.selected.values.get(a, "(default)"))
            j = xs.index(report.selected.values.get(b, "(default)"))
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        role = " (selection)" if metric == report.val_metric else ""
        ax.set_title(f"mean {metric}{role}", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85)
    n_seeds = sorted({len(c.members) for c in report.configs})
    sel = "; red box: selected on " + report.val_metric if report.selected is not None else ""
    fig.suptitle(f"{report.task or ''}: mean over {'/'.join(map(str, n_seeds))} seed(s){sel}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def metric_against(ax, xs: list[float], stats: list[Stats], label: str, shift_pt: float = 0.0, **kw) -> None:
    """Means against x with 95% interval error bars (none where n < 2), shifted sideways by
    shift_pt points so that two series at the same x stay readable."""
    err = [0.0 if math.isnan(s.half_width) else s.half_width for s in stats]
    bars = ax.errorbar(xs, [s.mean for s in stats], yerr=err, marker="o", capsize=3, label=label, **kw)
    if shift_pt:
        shift = mtransforms.ScaledTranslation(shift_pt / 72, 0, ax.figure.dpi_scale_trans)
        for art in bars.get_children():
            art.set_transform(art.get_transform() + shift)


def against_axis(report: Report, path: Path) -> Path | None:
    """One swept axis with numeric values: the val and test means (95% interval bars)
    against it; the selected value marked."""
    if len(report.axes) != 1:
        return None
    axis = report.axes[0]
    try:
        xs = [float(str(c.values.get(axis)).strip("[]")) for c in report.configs]
    except ValueError:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    for metric, shift in ((report.val_metric, -3.0), (report.metric, 3.0)):
        if any(c.stats[metric].n for c in report.configs):
            metric_against(ax, xs, [c.stats[metric] for c in report.configs], metric, shift)
    if report.selected is not None:
        ax.axvline(xs[report.configs.index(report.selected)], color="red", ls=":", lw=1.2, zorder=0,
                   label=f"selected on {report.val_metric}")
    ax.set_xticks(xs, [str(c.values.get(axis)) for c in report.configs])
    ax.minorticks_off()
    ax.set_xlabel(axis)
    ax.set_ylabel(report.metric.partition("/")[2])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{report.task or ''}: mean over seeds, bars: 95% interval", fontsize=10)
    return _save(fig, path)
