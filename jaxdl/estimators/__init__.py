"""Online gradient estimators for the recurrent stack (jaxdl.models.rnn): exact RTRL, UORO,
SnAp-1 and the element-wise rule of Zucchet et al. 2023 (elementwise.py, which exact RTRL
also runs on one element-wise layer), one file each, on the shared online transition (online.py). They run any cell
of jaxdl.models.cell through its Cell.step; the trainer is jaxdl.train.online_trainer."""
from __future__ import annotations

from jaxdl.estimators.elementwise import elementwise_memory_bytes, zucchet
from jaxdl.estimators.online import Estimator
from jaxdl.estimators.rtrl import rtrl, rtrl_memory_bytes
from jaxdl.estimators.snap1 import snap1, snap1_memory_bytes
from jaxdl.estimators.uoro import uoro

__all__ = ["Estimator", "ESTIMATORS", "get_estimator", "rtrl", "rtrl_memory_bytes", "snap1", "snap1_memory_bytes",
           "uoro", "zucchet", "elementwise_memory_bytes"]

ESTIMATORS = {"rtrl": rtrl, "uoro": uoro, "snap1": snap1, "zucchet": zucchet}


def get_estimator(name: str, objective) -> Estimator:
    """The estimator `name` ("rtrl" | "uoro" | "snap1" | "zucchet") for a jaxdl.objectives function."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown online estimator {name!r}; use one of {sorted(ESTIMATORS)} "
                         "(estimator=tbptt trains with truncated BPTT instead)")
    return ESTIMATORS[name](objective)
