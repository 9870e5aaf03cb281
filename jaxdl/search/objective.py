"""What a Hydra sweeper (Optuna's, conf/hparams_search/) optimizes: a run's val headline.

The task function (jaxdl.main.main) returns `objective(summary)`: the selected member's
val headline for a population (selection is on val only), else the run's final val
headline. Never a test value: a search that read test would select on it."""
from __future__ import annotations


def objective(summary: dict) -> float | None:
    """The val headline of a run's summary (summary.json), or None without a val split."""
    sel = summary.get("selection")
    if sel and sel.get("val") is not None:
        return float(sel["val"])
    key = "val/" + str(summary.get("headline", "")).partition("/")[2]
    value = summary.get("final", {}).get(key)
    return None if value is None else float(value)
