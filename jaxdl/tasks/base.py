"""What a sequence task hands the trainer: prepared, time-major arrays and how to
score them. Tasks are plain functions of their config values and a seed."""
from __future__ import annotations

from dataclasses import dataclass

from jaxdl.train.tbptt import Batch


@dataclass(frozen=True)
class SeqTask:
    name: str
    train: Batch          # arrays [N, T, B, ...]: N consecutive batches of T steps, B streams
    test: Batch           # same layout, evaluated statefully after each epoch
    in_dim: int
    out_dim: int
    loss: str             # key of jaxdl.objectives.OBJECTIVES
    headline: str         # metric in summary.json["final"] the run reports, e.g. "test/accuracy"
    chance: float         # the headline value of a model that learned nothing
    chance_text: str      # what that chance level is
    higher_is_better: bool = True
    reset: str | None = None   # a reset policy the task requires (None: use the config's)
    token_inputs: bool = False # x holds integer tokens, one-hot encoded (in_dim classes) inside the model
    vocab: tuple = ()          # the tokens' characters, for sampling
    sampling: dict | None = None   # {"prime", "chars", "temperature"}: text to dream after training
