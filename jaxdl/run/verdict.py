"""The closing line of a run: its headline metric against the task's chance level."""
from __future__ import annotations

import math


def chance_report(summary: dict) -> str:
    """Closing lines: the headline metric against its chance level."""
    name = summary["headline"]
    v = summary["final"].get(name, float("nan"))
    hib = summary["higher_is_better"]
    ratio = v / summary["chance"] if summary["chance"] else math.nan
    # "clearly": at least 10% better than the chance level / baseline
    better = (ratio > 1.1) if hib else (ratio < 1 / 1.1)
    if hib:
        verdict = "clearly above chance" if better else "NOT clearly above chance"
    else:
        verdict = "clearly better than the baseline" if better else "NOT clearly better than the baseline"
    return (f"{name} = {v:.4f}  ({summary['chance_text']}; {verdict}, ratio {ratio:.2f})")
