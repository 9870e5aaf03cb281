"""Reports of run directories: `python -m jaxdl.report DIR... [--out DIR_OR_FILE.md]`.

Reads run dirs only (summary.json, metrics.jsonl, .hydra/overrides.yaml; no network, no
wandb) and writes report.md with PNG figures: the table of configs (mean, std, 95% interval
and n over seeds), learning curves per config, a heatmap when two axes are swept, and the
config selected on validation (never on test)."""
from __future__ import annotations

import os
from pathlib import Path

from jaxdl.report.build import Config, Report, build
from jaxdl.report.collect import Member, collect

__all__ = ["Config", "Member", "Report", "build", "collect", "default_out", "make_report"]


def default_out(paths) -> Path:
    """Where report.md goes by default: the one dir given (a multirun dir or a run), or the
    common parent of several."""
    paths = [Path(p).resolve() for p in paths]
    return paths[0] if len(paths) == 1 else Path(os.path.commonpath(paths))


def make_report(paths, out=None, metric: str | None = None, command: str | None = None) -> tuple[Path, Report]:
    """Build the report of the runs under `paths` and write it: `out` is a directory (report.md
    and report_*.png inside) or a .md file (figures beside it, named after it). -> (the .md, Report)."""
    from jaxdl.report import figures, markdown
    report = build(paths, metric)
    out = Path(out) if out is not None else default_out(paths)
    md = out if out.suffix == ".md" else out / "report.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    stem = md.parent / md.stem
    figs = {"heatmap": figures.heatmap(report, Path(f"{stem}_heatmap.png")),
            "against": figures.against_axis(report, Path(f"{stem}_against.png")),
            "curves": figures.learning_curves(report, Path(f"{stem}_curves.png"))}
    for name, path in list(figs.items()):       # a figure not drawn this time must not linger
        if path is None:
            stale = Path(f"{stem}_{name}.png")
            if stale.exists():
                stale.unlink()
    text = markdown.render(report, {k: v for k, v in figs.items() if v}, md.parent, command)
    md.write_text(text + search_section(report, md.parent, stem) + "\n")
    return md, report


def search_section(report: Report, out_dir: Path, stem: Path) -> str:
    """For every halving or PBT run among the report's runs (summary.json has "search"): its
    members' curves with where they stopped or copied, the lineage's optimizer values (PBT)
    and best val against wall time (jaxdl.search.report), under a heading of its own."""
    from jaxdl.search.report import figures as search_figures
    runs = sorted({m.run for c in report.configs for m in c.members if "search" in m.summary})
    text = []
    for i, run in enumerate(runs):
        figs = search_figures(run, Path(f"{stem}_search{i}"))
        sched = next(m.summary["search"]["schedule"] for c in report.configs for m in c.members if m.run == run)
        text += ["", f"## {sched}: {os.path.relpath(run, out_dir)}", ""]
        text += [f"![{p.stem}]({os.path.relpath(p, out_dir)})" for p in figs]
    return "\n".join(text)
