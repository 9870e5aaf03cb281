"""Real time series shipped inside the package (no download)."""
from __future__ import annotations

from importlib import resources

import numpy as np

SERIES = {"airline": "airline_passengers.csv"}


def load_series(name: str) -> np.ndarray:
    """-> float64 [T]: the second column of the shipped CSV."""
    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}; shipped series: {sorted(SERIES)}")
    text = resources.files("jaxdl.data.series").joinpath(SERIES[name]).read_text()
    rows = [ln.split(",") for ln in text.splitlines() if ln and not ln.startswith("#")][1:]
    return np.array([float(r[1]) for r in rows])
