"""What a task hands its trainer: prepared data splits, how to score them, the
headline metric and its chance level, and the work to do after training. Tasks are
plain functions of their config values and a seed; `trainer` says which trainer of
jaxdl.train runs them through the one training loop.

after(state, run_dir) -> dict: runs once training has ended, with the final state
(member axis first): task-specific work such as dreaming text, drawing a forecast or
printing examples. It may return {"final": {metric: value}} (metrics that only exist
after training, e.g. a baseline fitted on the side) and other summary.json entries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from jaxdl.data.batch import Batch


@dataclass(frozen=True)
class SeqTask:
    """A stream task for the TBPTT trainer (trainer "tbptt")."""
    name: str
    train: Batch          # arrays [N, T, B, ...]: N consecutive batches of T steps, B streams
    test: Batch           # same layout, evaluated statefully after each epoch
    in_dim: int
    out_dim: int
    loss: str             # key of jaxdl.objectives.OBJECTIVES: "loss" and its own metrics (e.g. accuracy)
    headline: str         # metric in summary.json["final"] the run reports, e.g. "test/accuracy"
    chance: float         # the headline value of a model that learned nothing
    chance_text: str      # what that chance level is
    higher_is_better: bool = True
    reset: str | None = None   # a reset policy the task requires (None: use the config's)
    token_inputs: bool = False # x holds integer tokens, one-hot encoded (in_dim classes) inside the model
    vocab: tuple = ()          # the tokens' characters, for sampling
    val: Batch | None = None   # held out from the training data, evaluated like test
    after: Callable | None = None
    trainer: str = "tbptt"
    metrics: tuple = ()        # metrics reported besides the objective's (jaxdl.objectives.DERIVED), e.g. ("bpc",)


@dataclass(frozen=True)
class WorkflowTask:
    """A Keras-style Sequential model and its arrays (trainer "workflow").

    splits: name -> (x, y, mask | None, extra): evaluated as score(preds, (y, extra)),
    a jittable function returning {metric: scalar}."""
    name: str
    model: Any                 # a compiled Sequential (jaxdl.workflow.model.Compiled)
    train: tuple               # (x [N, ...], y [N, ...], mask [N, T] | None)
    splits: dict
    score: Callable
    batch_size: int
    headline: str
    chance: float
    chance_text: str
    higher_is_better: bool = True
    shuffle: bool = True
    after: Callable | None = None
    trainer: str = "workflow"


@dataclass(frozen=True)
class ArrayTask:
    """Feature vectors and labels or targets for the foundations trainers
    (trainer "perceptron", "linear" or "classify").

    data: {"train": (x, y), "val": (x, y), "test": (x, y)} (only "train" is required)."""
    name: str
    data: dict
    headline: str
    chance: float
    chance_text: str
    higher_is_better: bool = True
    after: Callable | None = None
    trainer: str = "classify"
