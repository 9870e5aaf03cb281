"""metrics.jsonl: one JSON object per logged point, with `step`, `epoch` and
metric names like `train/loss`, `test/accuracy`. Appended as training goes; on
resume, points logged after the restored checkpoint are dropped so that a resumed
run's file equals an uninterrupted run's."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _clean(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return v
    return None if math.isnan(v) or math.isinf(v) else v


class MetricsLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = []
        with self.path.open() as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        break  # a line cut by a kill: drop it and what follows
        return rows

    def truncate_after(self, epoch: int) -> None:
        """Keep only points with epoch <= `epoch` (written atomically)."""
        rows = [r for r in self.read() if r.get("epoch", 0) <= epoch]
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.path)

    def append(self, *rows: dict) -> None:
        """Append rows, flushed at once (a reader sees the epoch as it ends)."""
        with self.path.open("a") as f:
            for row in rows:
                f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
            f.flush()


def final_and_best(rows: list[dict], higher_is_better: dict[str, bool]) -> tuple[dict, dict]:
    """The last value of every metric, and its best value over the run (mean rows only)."""
    final, best = {}, {}
    for r in rows:
        if "member" in r:          # per-member rows: the run's values are the mean rows
            continue
        for k, v in r.items():
            if k in ("step", "epoch") or v is None or not isinstance(v, (int, float)):
                continue
            final[k] = v
            hib = higher_is_better.get(k.split("/")[-1], False)
            if k not in best or (v > best[k] if hib else v < best[k]):
                best[k] = v
    return final, best
