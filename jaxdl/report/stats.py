"""Statistics over seeds: mean, sample standard deviation, a 95% Student-t interval and n;
and the same per epoch for learning curves (a mean line and a band)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95


@dataclass(frozen=True)
class Stats:
    """n values -> mean, std (ddof=1; nan when n < 2), the 95% t-interval [lo, hi] of the
    mean (nan when n < 2)."""
    n: int
    mean: float
    std: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def t_quantile(n: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile for a mean of n values (n - 1 degrees of freedom)."""
    return float(_scipy_stats.t.ppf(0.5 + level / 2, n - 1))


def describe(values) -> Stats:
    """Stats of a list of numbers (None and nan are dropped). n = 0 gives nan everywhere."""
    xs = np.asarray([float(v) for v in values if v is not None and not math.isnan(float(v))], np.float64)
    n = int(xs.size)
    if n == 0:
        return Stats(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(xs.mean())
    if n == 1:
        return Stats(1, mean, math.nan, math.nan, math.nan)
    std = float(xs.std(ddof=1))
    half = t_quantile(n) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half)


def curve_band(curves: list[dict[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Learning curves of several seeds ({epoch: value} each) -> (epochs [E], mean [E],
    std [E] (ddof=1; 0 where one seed has the epoch), n [E]) over the seeds that reached
    each epoch (a run stopped early counts until it stopped)."""
    epochs = sorted({e for c in curves for e in c})
    mean, std, n = [], [], []
    for e in epochs:
        s = describe([c[e] for c in curves if e in c])
        mean.append(s.mean)
        std.append(s.std if s.n > 1 else 0.0)
        n.append(s.n)
    return np.asarray(epochs, float), np.asarray(mean), np.asarray(std), np.asarray(n, int)
