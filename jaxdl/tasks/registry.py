"""The task interface, and the registry of tasks by name.

A task is declared by the module that builds it: a module of jaxdl.tasks that defines

    TASKS = (Task(name, build, config, kind, needs), ...)

    build(cfg, seed, **needs) -> prepared data (jaxdl.data.prepared): SeqTask, WorkflowTask
        or ArrayTask, from the task's config object and the run's seed
    config: the dataclass of the task's settings (task.*), beside the builder
    kind: which trainer runs it (jaxdl.runner.TRAINERS):
        stream     SeqTask: TBPTT(k1, k2) or an online estimator (jaxdl.train)
        workflow   WorkflowTask: a Keras-style Sequential (jaxdl.workflow), built from model/optim/train
        classify   ArrayTask: the feed-forward classifier (jaxdl.classic.classifier_trainer)
        perceptron, linear: ArrayTask: the source text's learning rules (jaxdl.classic.rule_trainer)
    needs: what the builder takes besides (cfg, seed), by keyword: "data_dir" (tasks that read
        shared data), "model", "optim", "train" (the Keras-style tasks build their model)

`tasks()` finds every such module, so adding a task is one module (plus conf/task/<name>.yaml
and its tests): docs/tasks.md.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Callable, NamedTuple

KINDS = ("stream", "workflow", "classify", "perceptron", "linear")
NEEDS = ("data_dir", "model", "optim", "train")


class Task(NamedTuple):
    name: str
    build: Callable
    config: type
    kind: str
    needs: tuple = ()


@cache
def tasks() -> dict[str, Task]:
    """Every task of jaxdl.tasks by name (modules that define TASKS), in module order."""
    import jaxdl.tasks as pkg
    found: dict[str, Task] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"jaxdl.tasks.{info.name}")
        for t in getattr(mod, "TASKS", ()):
            if not isinstance(t, Task):
                raise TypeError(f"jaxdl.tasks.{info.name}.TASKS holds {t!r}, not a Task")
            if t.kind not in KINDS or set(t.needs) - set(NEEDS):
                raise ValueError(f"task {t.name!r}: kind {t.kind!r} (known: {KINDS}), needs {t.needs} "
                                 f"(known: {NEEDS})")
            if t.name in found:
                raise ValueError(f"task {t.name!r} is declared twice (jaxdl.tasks.{info.name} and another module)")
            found[t.name] = t
    return found


def get_task(name: str) -> Task:
    known = tasks()
    if name not in known:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(known)} (set task=<one of them>)")
    return known[name]


def build(entry: Task, cfg, seed: int, data_dir: str = "", model=None, optim=None, train=None):
    """Call a task's builder with (cfg, seed) and what its entry says it needs."""
    have = {"data_dir": data_dir, "model": model, "optim": optim, "train": train}
    return entry.build(cfg, seed, **{k: have[k] for k in entry.needs})
