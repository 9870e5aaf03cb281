"""The config a run dir was started with, and every launch on it (<run_dir>/launches.json).

A run dir keeps the resolved config of each launch that trained in it. A relaunch whose
config differs from the last launch's in anything that changes the computation is refused
before any compute (`LaunchRefused`, exit 2), naming each key with both values and the
two ways on: a new run dir, or `train.resume=amend`, which continues and records the
launch (its settings, what changed, the epochs it trained) here, in summary.json and in
the report. Keys that do not change what is trained pass (`PASSING`): train.epochs and
model.iterations (the perceptron's epochs; to extend a run), the progress display, the
checkpoint and chunk cadence, logging, the device mesh and processes (results do not
depend on them), the data folder's path.

Records are written only by the run that owns the dir: `begin` is called after the run
dir's lock is taken and before anything else is written, and writes launches.json and
jaxdl's copy of Hydra's files (.hydra/config.yaml, hydra.yaml, overrides.yaml; Hydra's
own output_subdir is off, conf/config.yaml) only once the launch is accepted. A refused
launch leaves every file as it was.

    launch = begin(run_dir, resolved, overrides, hydra_cfg)   # raises LaunchRefused
    ...
    launch.end(epoch)                                          # the epochs it trained
"""
from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

LAUNCHES = "launches.json"
RESUME_MODES = ("check", "amend")
PASSING = ("train.epochs", "model.iterations", "train.progress", "train.checkpoint_every", "train.checkpoint_every_s",
           "train.chunk_s", "train.resume", "data_dir")
PASSING_PREFIXES = ("logger.", "mesh.", "dist.")


class LaunchRefused(ValueError):
    """This launch may not train in this run dir (a changed config, a bad train.* setting).
    Raised before any compute and before any file is written; the entry point exits 2."""


def check_train_settings(train: dict) -> dict:
    """Validate the run-dir settings under train: (until the typed config schema holds them):
    chunk_s (seconds per chunk, > 0, or null for one chunk per epoch; default 2.0),
    checkpoint_every_s (seconds between mid-epoch checkpoints, > 0, or null: off; default null),
    resume ("check" | "amend"; default "check"). Returns them with defaults filled in."""
    out = {"chunk_s": train.get("chunk_s", 2.0), "checkpoint_every_s": train.get("checkpoint_every_s"),
           "resume": train.get("resume", "check")}
    for key in ("chunk_s", "checkpoint_every_s"):
        v = out[key]
        ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0)
        if not ok:
            raise LaunchRefused(f"train.{key}: must be a number of seconds > 0 or null, got {v!r} "
                                f"(e.g. train.{key}=2.0)")
    if out["resume"] not in RESUME_MODES:
        raise LaunchRefused(f"train.resume: must be one of {RESUME_MODES}, got {out['resume']!r} "
                            "(amend: continue a run dir with changed settings, recording the change)")
    return out


def flatten(tree, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def passes(key: str) -> bool:
    return key in PASSING or key.startswith(PASSING_PREFIXES)


def differences(before: dict, now: dict) -> dict[str, list]:
    """{key: [value before, value now]} of the keys that change the computation."""
    a, b = flatten(before), flatten(now)
    absent = "(absent)"
    return {k: [a.get(k, absent), b.get(k, absent)] for k in sorted(a.keys() | b.keys())
            if not passes(k) and a.get(k, absent) != b.get(k, absent)}


def _refusal(run_dir: Path, diff: dict[str, list]) -> str:
    lines = "\n".join(f"  {k}: {json.dumps(old)} there, {json.dumps(new)} now" for k, (old, new) in diff.items())
    keys = ", ".join(diff)
    return (f"{run_dir} holds a run started with other settings ({keys}), so resuming it would train the "
            f"rest of it with a different computation:\n{lines}\nEither start a new run with these settings "
            f"(hydra.run.dir=<a new dir>), or continue this one with them on purpose: add train.resume=amend "
            f"(each launch's settings and the epochs it trained are then recorded in {LAUNCHES}, summary.json "
            f"and the report)")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Launch:
    """The accepted launch: its record's index in launches.json."""
    path: Path
    index: int

    def records(self) -> list[dict]:
        return json.loads(self.path.read_text())["launches"]

    def start(self, epoch: int) -> None:
        """Record the epoch this launch resumed at (its segment starts after it)."""
        data = json.loads(self.path.read_text())
        data["launches"][self.index]["from_epoch"] = int(epoch)
        _write(self.path, data)

    def end(self, epoch: int) -> None:
        """Record the last epoch this launch finished (its segment is epochs from+1 .. epoch)."""
        data = json.loads(self.path.read_text())
        data["launches"][self.index]["to_epoch"] = int(epoch)
        _write(self.path, data)

    def segments(self, epoch: int | None = None) -> list[dict]:
        """summary.json's "launches": per launch its start, overrides, changed keys and epochs
        (from_epoch + 1 .. to_epoch); `epoch`: where this launch is now."""
        out = [{k: r.get(k) for k in ("launch", "started", "overrides", "changed", "resume", "from_epoch",
                                       "to_epoch")} for r in self.records()]
        if epoch is not None:
            out[self.index]["to_epoch"] = int(epoch)
        return out


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def holds_checkpoint(run_dir: Path) -> bool:
    """Whether the run dir has a finished checkpoint (checkpoints/<epoch> or checkpoints/mid/<update>)."""
    return any(p.name.isdigit() for d in (Path(run_dir) / "checkpoints", Path(run_dir) / "checkpoints" / "mid")
               if d.is_dir() for p in d.iterdir())


def _layout_text(layout: dict | None) -> str:
    return ("no online estimator's state" if layout is None else
            f"estimator={layout['estimator']}'s state in layout {layout['version']}")


def check_state_layout(run_dir: Path, records: list[dict], now: dict | None) -> None:
    """Refuse (LaunchRefused, one line) a resume from checkpoints whose online-estimator state
    was written in another layout than this code's: the arrays may load with the same shapes
    and another meaning (a square matrix stored transposed). now / a launch's "state_layout":
    {"estimator": name, "version": jaxdl.estimators.STATE_LAYOUTS[name]}, None for TBPTT. A
    launch recorded before layouts were (no "state_layout") wrote version 1 of its
    estimator. Only a run dir that holds a checkpoint is checked."""
    if not holds_checkpoint(run_dir):
        return
    if records and "state_layout" in records[-1]:
        had = records[-1]["state_layout"]
    else:                              # unrecorded: the estimator of the last launch (or this one) at version 1
        if records:
            name = (records[-1]["config"].get("estimator") or {}).get("name", "tbptt")
        else:
            name = now["estimator"] if now else "tbptt"
        had = None if name == "tbptt" else {"estimator": name, "version": 1}
    if had != now:
        raise LaunchRefused(
            f"{run_dir}: its checkpoints hold {_layout_text(had)}, but this code writes and reads "
            f"{_layout_text(now)}, so resuming could load arrays of the same shapes with another meaning; start "
            f"a new run dir (hydra.run.dir=<a new dir>), or resume with the code that wrote it (nothing here was "
            f"changed)")


def begin(run_dir: Path, resolved: dict, resume: str, start_epoch: int, overrides: list[str] | None = None,
          hydra_cfg=None, state_layout: dict | None = None) -> Launch:
    """Check this launch against the run dir's last launch and record it (see the module
    docstring). `start_epoch`: the epochs already in the run dir (its metrics rows), the
    segment's start. `state_layout`: the layout of the online estimator's state this code
    checkpoints (check_state_layout; None: TBPTT). Raises LaunchRefused (nothing written)
    for a changed config without train.resume=amend, or another state layout."""
    run_dir = Path(run_dir)
    path = run_dir / LAUNCHES
    data = json.loads(path.read_text()) if path.exists() else {"launches": []}
    check_state_layout(run_dir, data["launches"], state_layout)
    changed: dict = {}
    if data["launches"]:
        changed = differences(data["launches"][-1]["config"], resolved)
        if changed and resume != "amend":
            raise LaunchRefused(_refusal(run_dir, changed))
    elif start_epoch > 0:
        changed = {"(unrecorded)": ["a launch before launches.json was kept", "this launch"]}
    data["launches"].append({"launch": len(data["launches"]) + 1, "started": _now(), "overrides": overrides or [],
                             "resume": resume, "changed": changed, "from_epoch": int(start_epoch),
                             "to_epoch": None, "config": resolved, "state_layout": state_layout})
    _write(path, data)
    write_hydra_copy(run_dir, resolved, overrides, hydra_cfg)
    return Launch(path, len(data["launches"]) - 1)


def write_hydra_copy(run_dir: Path, resolved: dict, overrides: list[str] | None, hydra_cfg) -> None:
    """.hydra/config.yaml (the resolved config), overrides.yaml and hydra.yaml of this launch,
    as Hydra writes them, but only for an accepted launch (Hydra's own copy is off)."""
    from omegaconf import OmegaConf
    d = Path(run_dir) / ".hydra"
    d.mkdir(exist_ok=True)
    OmegaConf.save(OmegaConf.create(resolved), d / "config.yaml")
    if overrides is not None:
        OmegaConf.save(OmegaConf.create(list(overrides)), d / "overrides.yaml")
    if hydra_cfg is not None:
        OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), d / "hydra.yaml")
