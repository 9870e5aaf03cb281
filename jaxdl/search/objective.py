"""What a Hydra sweeper (Optuna's, conf/hparams_search/) optimizes: a run's val headline.

The task function (jaxdl.main.main) returns `objective(summary)`: the selected member's
val headline for a population (selection is on val only), else the run's final val
headline. A sweep trial with `hydra.sweeper.trial_value=mean` (summary.json
"trial": {"value": "mean"}) returns instead the mean of the final val headline over the
members that trained to the end (a trial of replicas: the mean over its seeds). Never a
test value: a search that read test would select on it."""
from __future__ import annotations


def objective(summary: dict) -> float | None:
    """The val headline of a run's summary (summary.json), or None without a val split."""
    key = "val/" + str(summary.get("headline", "")).partition("/")[2]
    if (summary.get("trial") or {}).get("value") == "mean":
        vals = [m["final"][key] for m in summary.get("members") or []
                if m.get("stopped_at") is None and key in m.get("final", {})]
        if vals:
            return float(sum(vals) / len(vals))
    sel = summary.get("selection")
    if sel and sel.get("val") is not None:
        return float(sel["val"])
    value = summary.get("final", {}).get(key)
    return None if value is None else float(value)
