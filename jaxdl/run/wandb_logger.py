"""wandb, one run per job: offline unless told otherwise (never hangs without a
network), config = the resolved Hydra config, grouped by sweep, finished in a
`finally` by the caller. The run id lives in the run dir so a resumed job
continues the same wandb run."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

MODES = ("offline", "online", "disabled")


class WandbLogger:
    def __init__(self, run_dir: Path, mode: str, project: str, group: str | None,
                 name: str | None, config: dict, tags=()):
        if mode not in MODES:
            raise ValueError(f"logger.mode must be one of {MODES}, got {mode!r}")
        self.run = None
        self.mode, self.project, self.group, self.name, self.config = mode, project, group, name, config
        self.run_dir, self.tags = Path(run_dir), list(tags)
        if mode == "disabled":
            return
        import wandb
        id_file = Path(run_dir) / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=project, group=group, name=name, dir=str(run_dir),
                              mode=mode, config=config, id=run_id, resume="allow",
                              tags=list(tags), settings=wandb.Settings(
                                  init_timeout=60, console="off", x_disable_stats=True))

    def log(self, row: dict, step: int) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if v is not None}, step=step)

    def summary(self, d: dict) -> None:
        if self.run is not None:
            for k, v in d.items():
                self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None

    def member_runs(self, members: list[dict], rows: list[dict]) -> None:
        """One wandb run per population member, grouped under this run: its config is the
        run's plus the member's population values and replica (so wandb's grouping and
        parallel-coordinates views compare members), its history the member's rows of
        metrics.jsonl, its summary the member's final metrics. Written after training."""
        if self.run is None:
            return
        import wandb
        group = f"{self.group}/{self.name}" if self.group else (self.name or self.run.id)
        for m in members:
            i = m["member"]
            cfg = {**self.config, "member": i, "replica": m["replica"], **m["hparams"]}
            run = wandb.init(project=self.project, group=group, name=f"{self.name or self.run.id}/member{i}",
                             dir=str(self.run_dir), mode=self.mode, config=cfg, id=f"{self.run.id}-m{i}",
                             resume="allow", tags=self.tags + ["member"], reinit="create_new",
                             settings=wandb.Settings(init_timeout=60, console="off", x_disable_stats=True))
            for r in rows:
                if r.get("member") == i:
                    run.log({k: v for k, v in r.items() if k not in ("step", "member") and v is not None},
                            step=int(r["step"]))
            for k, v in m["final"].items():
                run.summary[f"final/{k}"] = v
            run.finish()
