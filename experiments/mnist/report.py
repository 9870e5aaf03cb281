"""MNIST results table from run directories, beside LeCun et al. 1998's numbers,
and the plot of test error against hidden size for the seed's rules of thumb.

    .venv/bin/python experiments/mnist/report.py [--runs experiments/mnist/runs]
Writes experiments/mnist/RESULTS.md and experiments/mnist/hidden_sweep.png.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROWS = [  # run dir, description, paper error %, paper source
    ("seed_300", "2-layer NN, 300 hidden units, MSE (the seed's recipe)", 4.7, "LeCun et al. 1998"),
    ("seed_1000", "2-layer NN, 1000 hidden units, MSE", 4.5, "LeCun et al. 1998"),
    ("seed_300_100", "3-layer NN, 300+100 hidden units, MSE", 3.05, "LeCun et al. 1998"),
    ("modern_800", "ReLU MLP, 800 hidden units, cross-entropy, Adam", 1.6, "Simard et al. 2003 (800 HU, CE)"),
]


def load(run: Path) -> dict | None:
    s = run / "summary.json"
    if not s.exists():
        return None
    out = json.loads(s.read_text())
    cfg = run / ".hydra" / "config.yaml"
    out["_cfg"] = yaml.safe_load(cfg.read_text()) if cfg.exists() else {}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=str(HERE / "runs"))
    a = ap.parse_args(argv)
    runs = Path(a.runs)
    lines = ["| model | paper test error | ours: final | ours: best eval | epochs | s/epoch (2 CPU cores) |",
             "|---|---|---|---|---|---|"]
    for name, desc, paper, src in ROWS:
        s = load(runs / name)
        if s is None:
            lines.append(f"| {desc} | {paper:.2f}% ({src}) | not run | | | |")
            continue
        fin, best = 100 * s["final"]["test/error"], 100 * s["best"]["test/error"]
        stop = f" (stopped: error rose at {s['stopped_early_at']})" if s.get("stopped_early_at") else ""
        lines.append(f"| {desc} | {paper:.2f}% ({src}) | **{fin:.2f}%** | {best:.2f}% | "
                     f"{s['epochs_run']}{stop} | {s['epoch_time_s']:.2f} |")
    sweep = []
    sd = runs / "hidden_sweep"
    if sd.is_dir():
        for d in sorted(sd.iterdir()):
            s = load(d)
            if s:
                sweep.append((s["sizes"][1], 100 * s["final"]["test/error"]))
    base = load(runs / "seed_300")
    if base:
        sweep.append((300, 100 * base["final"]["test/error"]))
    sweep.sort()
    text = ["# MNIST: the seed's network against LeCun et al. 1998", "",
            "Made by `experiments/mnist/report.py` from the run directories of `experiments/mnist/run.sh`.",
            "Test error = wrong / total on the 10,000 test images (the seed's 错误率).", "", *lines, ""]
    if sweep:
        text += ["## Hidden size: the seed's rules of thumb", "",
                 "log2(784) = 10, sqrt(784 + 10) + alpha = 29 (alpha 1) .. 38 (alpha 10), sqrt(784 * 10) = 89, "
                 "and the seed's choice 300 (the sweep runs 20 epochs each).", "",
                 "| hidden units | test error |", "|---|---|"]
        text += [f"| {h} | {e:.2f}% |" for h, e in sweep]
        text += ["", "![test error against hidden size](hidden_sweep.png)", ""]
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([h for h, _ in sweep], [e for _, e in sweep], "o-")
        ax.set_xscale("log"); ax.set_xlabel("hidden units"); ax.set_ylabel("test error (%)")
        ax.set_title("784-h-10 sigmoid MLP, per-sample SGD")
        fig.tight_layout(); fig.savefig(HERE / "hidden_sweep.png", dpi=100); plt.close(fig)
    (HERE / "RESULTS.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
