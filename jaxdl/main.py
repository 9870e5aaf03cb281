"""Hydra entry point: `python -m jaxdl.main [overrides]` (or ./launch.sh).

Config becomes typed config objects here (jaxdl.configure.parse) and is checked
before any compute; then the task is built, the trainer runs, and the run directory
gets metrics.jsonl, summary.json (with the effective settings and the provenance),
checkpoints/ and the wandb run files (whose config holds the same two records)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from jaxdl.config.schema import Config
from jaxdl.configure import ConfigError, effective, parse


def _group_and_name() -> tuple[str | None, str]:
    hc = HydraConfig.get()
    if hc.mode.name == "MULTIRUN":
        return Path(hc.sweep.dir).name, f"{hc.job.num}_{hc.job.override_dirname or 'default'}"
    return None, hc.job.override_dirname or "default"


def run(config: Config, run_dir: Path, overrides: list[str], group: str | None, name: str) -> dict:
    """Build the task, train, write the run dir. Returns the summary. Stop signals
    (SIGTERM, SIGUSR1, SIGUSR2, a first Ctrl-C) end the run at the next chunk boundary with
    a checkpoint (jaxdl.run.signals). The launch is checked against the run dir's config
    and recorded once the run dir's lock is held (jaxdl.run.launches). summary.json and the
    wandb config record the effective settings ("config") and the provenance (commit,
    lock, versions, overrides)."""
    import dataclasses
    from jaxdl.run.context import RunContext
    from jaxdl.run.launches import begin, check_train_settings
    from jaxdl.run.provenance import provenance
    from jaxdl.run.signals import StopFlag
    from jaxdl.run.wandb_logger import WandbLogger
    from jaxdl.runner import run_task

    from jaxdl.run.failures import tracebacks_to_the_log_only
    settings = check_train_settings(dataclasses.asdict(config.train))
    tracebacks_to_the_log_only()
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = StopFlag()
    ctx = None
    logger = None
    exit_code = 1
    try:
        ctx = RunContext(run_dir, None, config.train.checkpoint_every, config.train.progress, stop)
        if ctx.primary:
            hc = HydraConfig.get() if HydraConfig.initialized() else None
            from jaxdl.estimators import state_layout
            ctx.launch = begin(run_dir, effective(config), settings["resume"], ctx.last_checkpoint() or 0,
                               overrides, hc, state_layout(config.estimator.name))
        records = {"config": effective(config), "provenance": provenance(overrides, run_dir if ctx.primary else None)}
        lg = config.logger
        mode = lg.mode if ctx.primary else "disabled"    # one wandb run: process 0's
        logger = ctx.logger = WandbLogger(run_dir, mode, lg.project, lg.group or group, name, records,
                                          tags=lg.tags)
        from jaxdl.search.trial import from_hydra
        trial = from_hydra(HydraConfig.get() if HydraConfig.initialized() else None, run_dir)
        summary = run_task(config, ctx, records, trial)
        exit_code = 0
        return summary
    finally:
        if ctx is not None:
            ctx.close()
        if logger is not None:
            logger.finish(exit_code)
        stop.hand_on()      # a scheduler's own handler (submitit: requeue) runs after our checkpoint


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """One run; returns its val headline (jaxdl.search.objective), what a sweeper optimizes."""
    from jaxdl.run.provenance import hydra_overrides
    overrides = hydra_overrides()
    try:
        config = parse(cfg, overrides)
    except ConfigError as e:
        print(f"[jaxdl] config error: {e}", file=sys.stderr)
        sys.exit(2)
    import absl.logging
    absl.logging.set_verbosity(absl.logging.WARNING)  # orbax logs every file it renames at INFO
    import logging
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU" notices
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    from jaxdl.run.mesh import (MeshError, ask_cpu_devices, ask_cpu_threads, init_distributed, resolve_mesh,
                                same_on_all_processes)
    try:
        m = config.mesh
        ask_cpu_threads(m["cpu_threads"], explicit=m["cpu_threads_setting"] != 0)   # before JAX starts
        if init_distributed(config.dist) is None:   # several processes: before any other JAX use
            ask_cpu_devices(m["replica"], m["data"])  # one process on a CPU: a device per mesh slot
        import jax
        # devices known now: -1 resolved, the mesh checked
        resolve_mesh(m["replica"], m["data"], jax.device_count(), jax.process_count(), m["members"], m["streams"])
        same_on_all_processes(str(run_dir.absolute()), "the run dir",
                              "set hydra.run.dir=<a directory every process sees> on all of them")
    except MeshError as e:
        print(f"[jaxdl] config error: {e}", file=sys.stderr)
        sys.exit(2)
    group, name = _group_and_name()
    try:
        summary = run(config, run_dir, overrides, group, name)
    except Exception as e:  # a clear last line, non-zero exit; the traceback is in the run's log
        from jaxdl.run.failures import explain, log_traceback
        from jaxdl.run.launches import LaunchRefused
        from jaxdl.run.signals import exit_code_for
        from jaxdl.train.errors import Preempted, TrainingDiverged
        if isinstance(e, Preempted):
            code = exit_code_for(e.signal_name)
            print(f"[jaxdl] {e} (exit code {code})", file=sys.stderr)
            sys.exit(code)
        if isinstance(e, LaunchRefused):
            print(f"[jaxdl] config error: {e}", file=sys.stderr)
            sys.exit(2)
        line = explain(e, run_dir)
        if line is not None:
            print(f"[jaxdl] error: {line} (traceback: {log_traceback(e, run_dir)})", file=sys.stderr)
            sys.exit(1)
        if isinstance(e, (TrainingDiverged, ValueError, FileNotFoundError)):
            print(f"[jaxdl] error: {e}", file=sys.stderr)
            sys.exit(1)
        raise
    from jaxdl.search.objective import objective
    return objective(summary)


def _check_run_dir_arg(argv: list[str]) -> None:
    """A hydra.run.dir given on the command line that cannot be made or written is reported
    in one line before Hydra tries to set up its log there (which would end in a traceback)."""
    for a in argv:
        if a.startswith("hydra.run.dir="):
            d = Path(a.partition("=")[2])
            try:
                d.mkdir(parents=True, exist_ok=True)
                ok = os.access(d, os.W_OK)
            except OSError as err:
                ok, why = False, err.strerror
            else:
                why = "not writable"
            if not ok:
                print(f"[jaxdl] error: hydra.run.dir={d} cannot be used ({why}): pick a writable directory",
                      file=sys.stderr)
                sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    _check_run_dir_arg(sys.argv[1:])
    from jaxdl.command_line import check_command_line
    line = check_command_line(sys.argv[1:])
    if line is not None:
        print(f"[jaxdl] config error: {line}", file=sys.stderr)
        sys.exit(2)
    main()
