"""Hydra entry point: `python -m jaxdl.main [overrides]` (or ./launch.sh).

Config becomes plain values here (jaxdl.config.parse) and is checked before any
compute; then the task is built, the trainer runs, and the run directory gets
metrics.jsonl, summary.json, checkpoints/ and the wandb run files."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from jaxdl.config import ConfigError, RunSpec, parse


def _group_and_name() -> tuple[str | None, str]:
    hc = HydraConfig.get()
    if hc.mode.name == "MULTIRUN":
        return Path(hc.sweep.dir).name, f"{hc.job.num}_{hc.job.override_dirname or 'default'}"
    return None, hc.job.override_dirname or "default"


def run(spec: RunSpec, run_dir: Path, resolved: dict, group: str | None, name: str) -> dict:
    """Build the task, train, write the run dir. Returns the summary."""
    from jaxdl.run.context import RunContext
    from jaxdl.run.wandb_logger import WandbLogger

    run_dir.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(run_dir, spec.logger["mode"], spec.logger.get("project", "jaxdl"),
                         spec.logger.get("group") or group, name, resolved,
                         tags=spec.logger.get("tags") or ())
    ctx = RunContext(run_dir, logger, spec.train["checkpoint_every"], spec.train.get("progress", True))
    exit_code = 1
    try:
        if spec.task_kind == "sequence":
            summary = _run_sequence(spec, ctx)
        elif spec.task_kind == "workflow":
            from jaxdl.workflow.runner import run_workflow
            summary = run_workflow(spec, ctx)
        else:
            from jaxdl.classic.runner import run_classic
            summary = run_classic(spec, ctx)
        exit_code = 0
        return summary
    finally:
        ctx.close()
        logger.finish(exit_code)


def _run_sequence(spec: RunSpec, ctx) -> dict:
    from jaxdl.tasks import SEQUENCE_TASKS, call_task
    from jaxdl.train.fit_sequence import chance_report, fit_sequence

    task = call_task(SEQUENCE_TASKS[spec.task], spec.data_dir, seed=spec.seed, **spec.task_params)
    m, o, tb, tr = spec.model.params, spec.optim, spec.tbptt, spec.train
    summary = fit_sequence(
        task, ctx, seed=spec.seed, hidden=m["hidden"], layers=m.get("layers", 1),
        forget_bias=m.get("forget_bias", 1.0), hoist=m.get("hoist"), optimizer=o["name"], lr=o["lr"],
        clip=o.get("clip", 0.0), k1=tb["k1"], k2=tb["k2"], reset=tb["reset"], epochs=tr["epochs"],
        replicas=tr["replicas"], eval_every=tr["eval_every"], shuffle=tr.get("shuffle", True))
    print(f"\n[jaxdl] {spec.task}: {tr['epochs']} epochs, TBPTT(k1={tb['k1']}, k2={tb['k2']}), "
          f"hidden={m['hidden']}, {summary['num_params']} params, {summary['wall_time_s']:.1f} s")
    if tr["replicas"] > 1:
        st = summary["replica_stats"][summary["headline"]]
        print(f"[jaxdl] {tr['replicas']} replicas: {summary['headline']} "
              f"mean {st['mean']:.4f} +- {st['std']:.4f}")
    print(f"[jaxdl] {chance_report(summary)}")
    if task.sampling:
        import jax
        from jaxdl.tasks.text import sample
        params = jax.tree.map(lambda a: a[0], summary["_params"])     # replica 0
        s = task.sampling
        text = sample(params, task.vocab, s["prime"], s["chars"], s["temperature"], jax.random.PRNGKey(spec.seed))
        (ctx.run_dir / "sample.txt").write_text(text)
        print(f"[jaxdl] dreamed at temperature {s['temperature']} (sample.txt):\n{text}\n")
    print(f"[jaxdl] run dir: {ctx.run_dir}")
    summary.pop("_params", None)
    return summary


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        spec = parse(cfg)
    except ConfigError as e:
        print(f"[jaxdl] config error: {e}", file=sys.stderr)
        sys.exit(2)
    import absl.logging
    absl.logging.set_verbosity(absl.logging.WARNING)  # orbax logs every file it renames at INFO
    import logging
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU" notices
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    group, name = _group_and_name()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        run(spec, run_dir, resolved, group, name)
    except Exception as e:  # a clear last line, non-zero exit; the traceback is in the run's log
        from jaxdl.train.errors import TrainingDiverged
        if isinstance(e, (TrainingDiverged, ValueError, FileNotFoundError)):
            print(f"[jaxdl] error: {e}", file=sys.stderr)
            sys.exit(1)
        raise


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    main()
