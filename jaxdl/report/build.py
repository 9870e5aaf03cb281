"""From run dirs to a Report: the configs with their statistics over seeds, the axes that
vary, and the config selected on validation. Selection reads `val/<metric>` only: the test
value of the selected config is reported, never used to choose it; runs without a val
metric get no selection (the report says why)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from jaxdl.objectives import HIGHER_IS_BETTER
from jaxdl.report.collect import Member, collect_all
from jaxdl.report.stats import Stats, describe

# HIGHER_IS_BETTER: metric names where a higher value is better, for a --metric that is not
# the runs' headline; the headline's direction comes from summary.json


@dataclass
class Config:
    key: tuple                    # sorted (override key, value) pairs
    members: list[Member]
    stats: dict[str, Stats]       # metric -> Stats of the members' final values

    @property
    def values(self) -> dict[str, str]:
        return dict(self.key)


@dataclass
class Report:
    sources: list[Path]
    metric: str                   # e.g. "test/accuracy": what the table and figures report
    val_metric: str               # e.g. "val/accuracy": what selection reads
    higher_is_better: bool
    configs: list[Config]
    axes: list[str]               # keys whose value differs between configs
    fixed: dict[str, str]         # keys with one value in every config
    selected: Config | None
    no_selection: str | None = None  # why nothing is selected
    notes: list[str] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)
    task: str | None = None
    unreadable: list = field(default_factory=list)     # [(run dir, why)]: named, left out
    in_progress: list = field(default_factory=list)    # [(run dir, lock record)]: a live process writes it
    amended: list = field(default_factory=list)        # [(run dir, launches)]: trained with changed settings
    pruned: list = field(default_factory=list)         # [(run dir, epoch, epochs)]: sweep trials the study pruned

    def label(self, config: Config) -> str:
        """The config as its varying overrides, e.g. 'model.hidden=16 optim.lr=0.003'."""
        vals = config.values
        return " ".join(f"{k}={vals.get(k, '(default)')}" for k in self.axes) or "(one config)"


def val_of(metric: str) -> str:
    """'test/accuracy' -> 'val/accuracy'."""
    split, _, name = metric.partition("/")
    if not name:
        raise ValueError(f"metric {metric!r} has no split; name it as split/metric, e.g. test/accuracy")
    return f"val/{name}"


def axis_order(values) -> list[str]:
    """Axis values in their natural order: numbers by value, '(default)' first, else as text."""
    def key(v):
        if v == "(default)":
            return (0, 0.0, "")
        try:
            x = yaml.safe_load(v)
        except yaml.YAMLError:
            x = v
        if isinstance(x, list) and len(x) == 1:
            x = x[0]
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return (1, float(x), v)
        return (2, 0.0, str(v))
    return sorted(set(values), key=key)


def _direction(members: list[Member], metric: str) -> bool:
    heads = {m.headline for m in members}
    hibs = {m.higher_is_better for m in members if m.headline and m.headline.partition("/")[2]
            == metric.partition("/")[2]}
    hibs.discard(None)
    if len(hibs) == 1:
        return hibs.pop()
    if len(hibs) > 1:
        raise ValueError(f"runs disagree whether a higher {metric} is better ({sorted(heads)})")
    return metric.partition("/")[2] in HIGHER_IS_BETTER


def build(paths, metric: str | None = None) -> Report:
    """Read every run under `paths` and make the Report (see the module docstring).
    `metric`: the test metric to report (default: the runs' headline, e.g. test/accuracy)."""
    paths = [Path(p) for p in paths]
    c = collect_all(paths)
    if not c.groups:
        bad = "".join(f"; {d} cannot be read ({why})" for d, why in c.unreadable)
        raise ValueError(f"no run directories with summary.json{' that can be read' if bad else ''} under "
                         f"{', '.join(map(str, paths))}{bad}; "
                         f"give a run dir, a multirun dir or a folder of them")
    report = from_groups(c.groups, metric, paths, c.unfinished)
    report.unreadable, report.in_progress, report.amended = c.unreadable, c.in_progress, c.amended
    report.pruned = c.pruned
    return report


def from_groups(groups: dict[tuple, list[Member]], metric: str | None = None, sources=(),
                unfinished=()) -> Report:
    """The Report of members already grouped into configs (collect's first result)."""
    every = [m for ms in groups.values() for m in ms]
    tasks = Counter(m.summary.get("task") for m in every)
    if len(tasks) > 1:
        raise ValueError(f"runs of different tasks ({', '.join(f'{t}: {n} members' for t, n in tasks.items())}); "
                         f"report each task's runs separately")
    if metric is None:
        heads = Counter(m.headline for m in every)
        heads.pop(None, None)
        if len(heads) != 1:
            raise ValueError(f"runs name {len(heads)} headline metrics ({sorted(heads)}); pick one with --metric")
        metric = next(iter(heads))
    elif not any(metric in m.final for m in every):
        names = sorted({k for m in every for k in m.final})
        raise ValueError(f"no run has a final {metric!r}; the runs have {names}")
    val_metric = val_of(metric)
    hib = _direction(every, metric)

    configs = [Config(key, ms, {k: describe([m.final.get(k) for m in ms]) for k in (val_metric, metric)})
               for key, ms in groups.items()]
    keys = sorted({k for c in configs for k in c.values})
    axes = [k for k in keys if len({c.values.get(k, "(default)") for c in configs}) > 1]
    fixed = {k: configs[0].values[k] for k in keys if k not in axes}
    # rows in the axes' natural order
    orders = {a: axis_order([c.values.get(a, "(default)") for c in configs]) for a in axes}
    configs.sort(key=lambda c: [orders[a].index(c.values.get(a, "(default)")) for a in axes])

    notes = []
    for c in configs:
        seen = Counter((m.seed, m.replica) for m in c.members)
        dup = [sr for sr, n in seen.items() if n > 1]
        if dup:
            label = " ".join(f"{k}={v}" for k, v in c.key) or "(one config)"
            notes.append(f"config `{label}` holds the same seed more than once ((seed, replica) = "
                         f"{', '.join(map(str, dup[:3]))}): the same run was given twice, and n counts each copy")
    with_val = [c for c in configs if c.stats[val_metric].n > 0]
    selected, why = None, None
    if not with_val:
        why = (f"no run has a final `{val_metric}` (runs made before the validation split, or a task "
                     f"without one): no config is selected. Selection reads validation only and never "
                     f"falls back to `{metric}`.")
    else:
        if len(with_val) < len(configs):
            notes.append(f"{len(configs) - len(with_val)} config(s) have no `{val_metric}` and cannot be selected")
        pick = max if hib else min
        selected = pick(with_val, key=lambda c: c.stats[val_metric].mean)
    return Report(list(sources), metric, val_metric, hib, configs, axes, fixed, selected, why, notes, list(unfinished),
                  next(iter(tasks)))
