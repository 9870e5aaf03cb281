"""Read run directories (summary.json, metrics.jsonl, .hydra/overrides.yaml) into members
and group the members into configs. Files only: no network, no wandb.

A member is one trained model: a run of one replica, or member i of a run with several
(`train.replicas` seeds and/or a `population`). A config is what a member was trained with,
minus its seed: the run's Hydra overrides without `seed=`, `train.replicas=`, `population.*`
and bookkeeping keys (logger, progress, hydra), plus the member's population values. Members
of one config are its seeds."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# overrides that do not change what is trained (seeds are pooled; population values come from
# each member's hparams)
IGNORED_KEYS = ("seed", "train.replicas", "train.progress", "train.checkpoint_every", "train.checkpoint_every_s",
                "train.chunk_s", "train.resume")
IGNORED_PREFIXES = ("hydra.", "logger.", "population.")
# directories of a run that hold no runs
SKIP_DIRS = {"checkpoints", "wandb", ".hydra", ".submitit"}


@dataclass(frozen=True, eq=False)
class Member:
    """One trained model. `final` is {split/metric: value} at the end of its training;
    `curve` its metrics.jsonl rows (epoch, step, split/metric ...)."""
    run: Path
    index: int                 # member index inside its run
    seed: int | None           # the run's seed
    replica: int               # member's replica: its init key is fold_in(PRNGKey(seed), replica)
    hparams: dict              # population values ({} without a population)
    final: dict
    curve: tuple = field(repr=False)
    summary: dict = field(repr=False, compare=False, hash=False, default_factory=dict)

    @property
    def headline(self) -> str | None:
        return self.summary.get("headline")

    @property
    def higher_is_better(self) -> bool | None:
        return self.summary.get("higher_is_better")


@dataclass
class Run:
    path: Path
    summary: dict
    overrides: list[str]
    rows: list[dict]


def find_run_dirs(paths) -> tuple[list[Path], list[Path]]:
    """(run dirs with a summary.json, dirs that look like unfinished runs: metrics.jsonl or
    .hydra but no summary.json) under the given paths: a run dir itself, a Hydra multirun dir
    (any depth), or a folder of runs. A path that does not exist is an error."""
    runs, unfinished = [], []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such directory; give run dirs or a multirun dir "
                                    f"(e.g. multirun/<date>/<time>)")
        for root, dirs, files in os.walk(p):
            root = Path(root)
            if "summary.json" in files:
                runs.append(root)
                dirs[:] = []                       # a run holds no runs
                continue
            if "metrics.jsonl" in files or ".hydra" in dirs:
                unfinished.append(root)
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
    dedup = lambda xs: sorted(set(xs), key=_natural)
    return dedup(runs), dedup(unfinished)


def _natural(path: Path):
    """Sort key: Hydra's job dirs `0_...`, `1_...`, ..., `10_...` in numeric order."""
    parts = []
    for part in path.parts:
        head = part.split("_", 1)[0]
        parts.append((0, int(head), part) if head.isdigit() else (1, 0, part))
    return parts


def read_rows(path: Path) -> list[dict]:
    """metrics.jsonl's rows; a line cut by a kill ends the file."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
    return rows


def load_run(path) -> Run:
    path = Path(path)
    try:
        summary = json.loads((path / "summary.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path / 'summary.json'} is not valid JSON ({err}); rerun that job or move it away") from err
    ov = path / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in (yaml.safe_load(ov.read_text()) or [])] if ov.exists() else []
    return Run(path, summary, overrides, read_rows(path / "metrics.jsonl"))


def members(run: Run) -> list[Member]:
    """The run's members: summary.json's "members" where present; in older runs one member
    per replica from "per_member" (or one member from "final"). A member's curve is its own
    rows of metrics.jsonl; a run that logged only mean rows gives them to member 0 alone (a
    mean is no seed of its own, so it adds no spread to a band)."""
    s = run.summary
    many = any("member" in r for r in run.rows)

    def curve(i: int) -> tuple:
        if many:
            return tuple({k: v for k, v in r.items() if k != "member"} for r in run.rows
                         if "member" in r and int(r["member"]) == i)
        return tuple(r for r in run.rows if "member" not in r) if i == 0 else ()

    if s.get("members"):
        recs = [(int(m["member"]), int(m.get("replica", 0)), dict(m.get("hparams") or {}), dict(m["final"]))
                for m in s["members"]]
    elif s.get("per_member") and len(next(iter(s["per_member"].values()))) > 1:
        per = s["per_member"]
        n = len(next(iter(per.values())))
        recs = [(r, r, {}, {k: v[r] for k, v in per.items() if len(v) == n}) for r in range(n)]
    else:
        recs = [(0, 0, {}, dict(s.get("final", {})))]
    return [Member(run.path, i, s.get("seed"), r, hp, final, curve(i), s) for i, r, hp, final in recs]


def parse_override(o: str) -> tuple[str, str]:
    """'model.hidden=16' -> ('model.hidden', '16'); '+task.x=1' -> ('task.x', '1')."""
    key, _, value = o.partition("=")
    return key.lstrip("+"), value


def format_value(v) -> str:
    """A population value as an override would spell it: 0.003 -> '0.003', 1.0 -> '1.0'."""
    return repr(v) if isinstance(v, float) else str(v)


def config_of(run: Run, member: Member) -> tuple[tuple[str, str], ...]:
    """The member's config: sorted (key, value) pairs (see the module docstring)."""
    cfg = {}
    for o in run.overrides:
        key, value = parse_override(o)
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        cfg[key] = value
    cfg.update({k: format_value(v) for k, v in member.hparams.items()})
    return tuple(sorted(cfg.items()))


@dataclass
class Collected:
    """What collect_all found: the members grouped by config; dirs without summary.json; runs
    that could not be read, with why ([(dir, reason)]); runs whose lock a live process holds
    (in progress, [(dir, holder record)]); runs trained in several launches with changed
    settings (train.resume=amend: [(dir, summary's "launches")]); Optuna sweep trials the
    study pruned ([(dir, pruned after epoch, the run's epochs)])."""
    groups: dict
    unfinished: list
    unreadable: list = field(default_factory=list)
    in_progress: list = field(default_factory=list)
    amended: list = field(default_factory=list)
    pruned: list = field(default_factory=list)


def collect_all(paths) -> Collected:
    """Read every run under `paths` (see Collected); one run that cannot be read is named,
    not fatal."""
    from jaxdl.run.lock import holder
    dirs, unfinished = find_run_dirs(paths)
    out = Collected({}, unfinished)
    for d in dirs + unfinished:
        h = holder(d)
        if h is not None:
            out.in_progress.append((d, h))
    for d in dirs:
        try:
            run = load_run(d)
            ms = members(run)
            keyed = [(config_of(run, m), m) for m in ms]
        except (ValueError, OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
            out.unreadable.append((d, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]))
            continue
        for key, m in keyed:
            out.groups.setdefault(key, []).append(m)
        launches = run.summary.get("launches") or []
        if any(seg.get("changed") for seg in launches[1:]):
            out.amended.append((d, launches))
        if (run.summary.get("trial") or {}).get("pruned_at") is not None:
            out.pruned.append((d, run.summary["trial"]["pruned_at"], run.summary.get("epochs")))
    return out


def collect(paths) -> tuple[dict[tuple, list[Member]], list[Path]]:
    """({config: [members]} over every run under `paths`, in the order found; unfinished dirs)."""
    c = collect_all(paths)
    return c.groups, c.unfinished
