"""Figures of a halving or PBT run, from its run dir alone (summary.json, metrics.jsonl,
progress.json):

    members.png   every member's val headline by epoch; x where halving stopped it,
                  a dot where PBT copied another member into it (labelled with the donor)
    lineage.png   the optimizer values the selected member's lineage trained with, epoch
                  by epoch, with the members it passed through (PBT)
    best_vs_wall.png   the best val headline over the members so far against wall time

    python -m jaxdl.search.report RUN_DIR [OUT_DIR]
`figures(run_dir, out_dir)` is what jaxdl.report calls for a run whose summary.json has
"search"; it returns the paths written."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(run_dir: Path):
    s = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    prog = run_dir / "progress.json"
    return s, rows, (json.loads(prog.read_text()) if prog.exists() else {})


def best_so_far(rows: list[dict], by: str, higher: bool, progress: dict) -> list[tuple[float, float]]:
    """[(wall s at the end of epoch e, the best `by` over the members' rows up to e)] for the
    epochs progress.json has a wall time of (the checkpointed ones)."""
    best, out = None, []
    for e in sorted({int(r["epoch"]) for r in rows}):
        vals = [r[by] for r in rows if int(r["epoch"]) == e and "member" in r and by in r]
        if vals:
            v = max(vals) if higher else min(vals)
            best = v if best is None else (max(best, v) if higher else min(best, v))
        if str(e) in progress and best is not None:
            out.append((progress[str(e)]["wall_time_s"], best))
    return out


def members_figure(ax, summary: dict, rows: list[dict], by: str) -> None:
    """Each member's `by` by epoch; x at a halving stop, a dot (donor's id) at a PBT copy."""
    for m in summary["members"]:
        i = m["member"]
        mine = [r for r in rows if r.get("member") == i and by in r]
        if not mine:
            continue
        xs, ys = [int(r["epoch"]) for r in mine], [r[by] for r in mine]
        line, = ax.plot(xs, ys, lw=1, alpha=0.8)
        if m.get("stopped_at") is not None:
            ax.plot(xs[-1], ys[-1], "x", color=line.get_color(), ms=7)
        at = {int(r["epoch"]): r[by] for r in mine}
        for c in m.get("copies", []):
            if c["epoch"] in at:
                ax.plot(c["epoch"], at[c["epoch"]], "o", color=line.get_color(), ms=4)
                ax.annotate(f"<{c['from']}", (c["epoch"], at[c["epoch"]]), fontsize=6)
    sel = summary.get("selection") or {}
    ax.set_xlabel("epoch")
    ax.set_ylabel(by)
    ax.set_title(f"{summary['search']['schedule']}: members (selected: {sel.get('member')})")


def lineage_figure(ax, summary: dict) -> None:
    """The selected member's optimizer values along its lineage (log scale), segments named."""
    sel = summary.get("selection") or {}
    sched = sel.get("hp_schedule") or []
    for key in sorted({k for h in sched for k in h if k != "epoch"}):
        ax.plot([h["epoch"] for h in sched], [h[key] for h in sched], marker=".", label=key)
    for seg in sel.get("lineage", []):
        ax.axvline(seg["from_epoch"] - 0.5, color="0.8", lw=0.8)
        ax.text(seg["from_epoch"], ax.get_ylim()[1] if sched else 1, f"m{seg['member']}", fontsize=7, va="top")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(f"lineage of member {sel.get('member')}: optimizer values")
    if sched:
        ax.legend(fontsize=7)


def figures(run_dir, out_dir=None) -> list[Path]:
    """Write the figures of a halving/PBT run dir into out_dir (default: the run dir)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    s, rows, prog = _load(run_dir)
    if "search" not in s:
        raise ValueError(f"{run_dir} is not a halving or PBT run (summary.json has no 'search')")
    by = (s.get("selection") or {}).get("by") or "val/" + s["headline"].partition("/")[2]
    paths = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)

    fig, ax = plt.subplots(figsize=(6, 4))
    members_figure(ax, s, rows, by)
    save(fig, "members.png")
    if s["search"]["schedule"] == "pbt":
        fig, ax = plt.subplots(figsize=(6, 3.5))
        lineage_figure(ax, s)
        save(fig, "lineage.png")
    pts = best_so_far(rows, by, s["higher_is_better"], prog)
    if pts:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(*zip(*pts), marker=".")
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel(f"best {by} so far")
        save(fig, "best_vs_wall.png")
    return paths


if __name__ == "__main__":
    for p in figures(*sys.argv[1:3]):
        print(p)
