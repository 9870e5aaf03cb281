"""MNIST results table from run directories, beside LeCun et al. 1998's numbers,
and the plot of test error against hidden size for the source text's rules of thumb. The runs
are read, pooled and plotted by jaxdl.report; this file adds the paper's column.

    .venv/bin/python experiments/mnist/report.py [--runs experiments/mnist/runs] [--out experiments/mnist]
Writes RESULTS.md and hidden_sweep.png in --out, and the sweep's own report
(report.md, figures) in <runs>/hidden_sweep.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from jaxdl.report import build, make_report
from jaxdl.report.collect import find_run_dirs, load_run
from jaxdl.report.stats import describe

HERE = Path(__file__).resolve().parent
ROWS = [  # run dir, description, paper error %, paper source
    ("seed_300", "2-layer NN, 300 hidden units, MSE (the source text's recipe)", 4.7, "LeCun et al. 1998"),
    ("seed_1000", "2-layer NN, 1000 hidden units, MSE", 4.5, "LeCun et al. 1998"),
    ("seed_300_100", "3-layer NN, 300+100 hidden units, MSE", 3.05, "LeCun et al. 1998"),
    ("modern_800", "ReLU MLP, 800 hidden units, cross-entropy, Adam", 1.6, "Simard et al. 2003 (800 HU, CE)"),
]
METRIC = "test/error"


def model_row(run_dir: Path, desc: str, paper: float, src: str) -> str:
    """One table row: our final and best test error (%) beside the paper's."""
    if not (run_dir / "summary.json").exists():
        return f"| {desc} | {paper:.2f}% ({src}) | not run | | | |"
    s = load_run(run_dir).summary
    fin = 100 * build([run_dir], METRIC).configs[0].stats[METRIC].mean     # mean over replicas, if several
    best = 100 * s["best"][METRIC]
    stop = f" (stopped: error rose at {s['stopped_early_at']})" if s.get("stopped_early_at") else ""
    return (f"| {desc} | {paper:.2f}% ({src}) | **{fin:.2f}%** | {best:.2f}% | "
            f"{s['epochs_run']}{stop} | {s['epoch_time_s']:.2f} |")


def hidden_sweep(runs: Path) -> list[tuple[int, object]]:
    """(hidden units, Stats of the final test error in %) for the sweep and the source text's 300."""
    points = []
    sd = runs / "hidden_sweep"
    if sd.is_dir() and find_run_dirs([sd])[0]:
        for c in build([sd], METRIC).configs:
            sizes = c.members[0].summary["sizes"]
            points.append((sizes[1], describe([100 * m.final[METRIC] for m in c.members])))
    if (runs / "seed_300" / "summary.json").exists():
        c = build([runs / "seed_300"], METRIC).configs[0]
        points.append((300, describe([100 * m.final[METRIC] for m in c.members])))
    return sorted(points, key=lambda p: p[0])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=str(HERE / "runs"))
    ap.add_argument("--out", default=str(HERE), help="where RESULTS.md and hidden_sweep.png go")
    a = ap.parse_args(argv)
    runs, out = Path(a.runs), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| model | paper test error | ours: final | ours: best eval | epochs | s/epoch (2 CPU cores) |",
             "|---|---|---|---|---|---|"]
    lines += [model_row(runs / name, desc, paper, src) for name, desc, paper, src in ROWS]
    sweep = hidden_sweep(runs)
    text = ["# MNIST: the source text's network against LeCun et al. 1998", "",
            "Made by `experiments/mnist/report.py` from the run directories of `experiments/mnist/run.sh`.",
            "Test error = wrong / total on the 10,000 test images (the source text's 错误率).", "", *lines, ""]
    if sweep:
        text += ["## Hidden size: the source text's rules of thumb", "",
                 "log2(784) = 10, sqrt(784 + 10) + alpha = 29 (alpha 1) .. 38 (alpha 10), sqrt(784 * 10) = 89, "
                 "and the source text's choice 300 (the sweep runs 20 epochs each).", "",
                 "| hidden units | test error |", "|---|---|"]
        text += [f"| {h} | {s.mean:.2f}% |" for h, s in sweep]
        text += ["", "![test error against hidden size](hidden_sweep.png)", ""]
        import matplotlib.pyplot as plt
        from jaxdl.report.figures import metric_against
        fig, ax = plt.subplots(figsize=(5, 3.5))
        metric_against(ax, [h for h, _ in sweep], [s for _, s in sweep], "test error")
        ax.set_xscale("log")
        ax.set_xlabel("hidden units")
        ax.set_ylabel("test error (%)")
        ax.set_title("784-h-10 sigmoid MLP, per-sample SGD")
        fig.tight_layout()
        fig.savefig(out / "hidden_sweep.png", dpi=100)
        plt.close(fig)
        if (runs / "hidden_sweep").is_dir() and find_run_dirs([runs / "hidden_sweep"])[0]:
            make_report([runs / "hidden_sweep"], metric=METRIC,
                        command="experiments/mnist/report.py")
    (out / "RESULTS.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
