"""The tasks: each module declares the tasks it builds (TASKS, jaxdl.tasks.registry), with
its config dataclass beside its builder. `TASKS` here is the registry's name -> Task table."""
from __future__ import annotations

from jaxdl.tasks.registry import Task, build, get_task, tasks

__all__ = ["TASKS", "Task", "build", "get_task", "tasks"]


def __getattr__(name):
    if name == "TASKS":          # found on first use, so importing one task module imports no other
        return tasks()
    raise AttributeError(f"module 'jaxdl.tasks' has no attribute {name!r}")
