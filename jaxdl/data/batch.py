"""The batch layout every sequence trainer reads: time-major arrays with a loss
weight and a mask that holds the recurrent state (jaxdl.train.tbptt,
jaxdl.estimators)."""
from __future__ import annotations

from typing import Any, NamedTuple


class Batch(NamedTuple):
    x: Any       # [T, B, ...]
    y: Any       # [T, B, ...]
    mask: Any    # [T, B]
    weight: Any  # [T, B]
