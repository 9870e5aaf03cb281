"""Runs the workflow tasks (forecast, seqclass, addition) from a RunSpec and
leaves the usual run directory: metrics.jsonl (one row per epoch, then the test
metrics), summary.json, checkpoints/ (orbax, every epoch), wandb. A rerun in the
same run dir resumes the fit from its last checkpoint and ends bit-identical."""
from __future__ import annotations

import numpy as np

from jaxdl.config import RunSpec
from jaxdl.run.context import RunContext
from jaxdl.tasks import WORKFLOW_TASKS, call_task

HEADLINE = {"forecast": "test/rmse", "seqclass": "test/accuracy", "addition": "test/exact_match"}


def run_workflow(spec: RunSpec, ctx: RunContext) -> dict:
    kw = dict(spec.task_params, hidden=spec.model.params["hidden"], epochs=spec.train["epochs"],
              batch_size=spec.train.get("batch_size", 32), lr=spec.optim["lr"], seed=spec.seed,
              verbose=1 if spec.train.get("progress", True) else 0,
              checkpoint_dir=ctx.run_dir / "checkpoints", checkpoint_every=spec.train["checkpoint_every"],
              resume=True)  # a rerun in the same run dir continues from its last checkpoint
    metrics, hist, extra = call_task(WORKFLOW_TASKS[spec.task], spec.data_dir, **kw)
    n_ep = len(hist.get("loss", []))
    ctx.metrics.truncate_after(0)  # the history is logged whole; a rerun's restored part is in it
    for e in range(n_ep):
        row = {"epoch": e + 1, "step": e + 1}
        for k, v in hist.items():
            row[f"val/{k[4:]}" if k.startswith("val_") else f"train/{k}"] = v[e]
        if e + 1 == n_ep:
            row.update(metrics)
        ctx.log(row)
    out = {"task": spec.task, "headline": HEADLINE[spec.task], "seed": spec.seed, "epochs": n_ep}
    if spec.task == "forecast":
        _plot_forecast(extra, ctx.run_dir / "forecast.png")
        out["baselines"] = {"persistence": metrics["test/rmse_persistence"], "mlp": metrics["test/rmse_mlp"]}
    if spec.task == "addition":
        out["examples"] = extra
        print("[jaxdl] held-out examples: " + "; ".join(extra))
    summary = ctx.write_summary(out, {"accuracy": True, "exact_match": True, "char_accuracy": True})
    shown = ", ".join(f"{k} = {v:.4f}" for k, v in metrics.items())
    print(f"\n[jaxdl] {spec.task}: {shown}")
    if spec.task == "forecast":
        beat = metrics["test/rmse"] < min(metrics["test/rmse_persistence"], metrics["test/rmse_mlp"])
        print(f"[jaxdl] the LSTM {'beats' if beat else 'does NOT beat'} the persistence and MLP baselines "
              "(RMSE in passengers, thousands)")
    print(f"[jaxdl] run dir: {ctx.run_dir}")
    return summary


def _plot_forecast(extra, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    t = np.arange(len(extra["truth"]))
    ax.plot(t, extra["truth"], "k-", label="truth")
    ax.plot(t, extra["lstm"], "r-", label="LSTM")
    ax.plot(t, extra["mlp"], "b--", label="MLP window")
    ax.plot(t, extra["persistence"], ":", color="gray", label="persistence")
    ax.set_xlabel("held-out month"); ax.set_ylabel("passengers (thousands)"); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(path, dpi=100); plt.close(fig)
