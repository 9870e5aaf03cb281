"""Online gradient estimators for the recurrent stack (jaxdl.models.rnn): exact RTRL, UORO,
SnAp-1 and the element-wise rule of Zucchet et al. 2023 (elementwise.py, which exact RTRL
also runs on one element-wise layer), one file each, on the shared online transition (online.py). They run any cell
of jaxdl.models.cell through its Cell.step; the trainer is jaxdl.train.online_trainer."""
from __future__ import annotations

import importlib

from jaxdl.estimators.elementwise import elementwise_memory_bytes, zucchet
from jaxdl.estimators.online import Estimator
from jaxdl.estimators.rtrl import rtrl, rtrl_memory_bytes
from jaxdl.estimators.snap1 import snap1, snap1_memory_bytes
from jaxdl.estimators.uoro import uoro

__all__ = ["Estimator", "ESTIMATORS", "STATE_LAYOUTS", "state_layout", "get_estimator", "rtrl",
           "rtrl_memory_bytes", "snap1", "snap1_memory_bytes", "uoro", "zucchet", "elementwise_memory_bytes"]

ESTIMATORS = {"rtrl": rtrl, "uoro": uoro, "snap1": snap1, "zucchet": zucchet}

# name -> the layout version of the state its checkpoints hold (each module's STATE_LAYOUT). A
# module raises it when a stored array changes meaning, even at the same shape (a square
# matrix stored transposed); a run dir records it per launch, and a resume from checkpoints of
# another layout is refused (jaxdl.run.launches.check_state_layout)
STATE_LAYOUTS = {name: importlib.import_module(fn.__module__).STATE_LAYOUT for name, fn in ESTIMATORS.items()}


def get_estimator(name: str, objective) -> Estimator:
    """The estimator `name` ("rtrl" | "uoro" | "snap1" | "zucchet") for a jaxdl.objectives function."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown online estimator {name!r}; use one of {sorted(ESTIMATORS)} "
                         "(estimator=tbptt trains with truncated BPTT instead)")
    return ESTIMATORS[name](objective)


def state_layout(name: str) -> dict | None:
    """What a run dir records for the state of estimator `name`: {"estimator", "version"}; None
    for estimator=tbptt (no estimator state)."""
    return {"estimator": name, "version": STATE_LAYOUTS[name]} if name in STATE_LAYOUTS else None
