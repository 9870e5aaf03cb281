"""metrics.jsonl: one JSON object per logged point, with `step`, `epoch` and
metric names like `train/loss`, `test/accuracy`. Appended as training goes. On resume
`settle(epoch, backup)` makes the file hold every epoch 1..epoch exactly once: rows of
later epochs are dropped (also when there is no checkpoint: epoch 0, nothing kept), a
damaged line is named, and the rows it held are rebuilt from the copies kept beside the
checkpoints (progress.json) or reported lost, so that a resumed run's file equals an
uninterrupted run's."""
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

    def lines(self) -> tuple[list[dict], list[tuple[int, str]]]:
        """(every readable row, [(line number, start of the text)] of the lines that are not
        a JSON object with an integer epoch: damaged or cut by a kill)."""
        rows, bad = [], []
        if not self.path.exists():
            return rows, bad
        with self.path.open(errors="replace") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                e = row.get("epoch") if isinstance(row, dict) else None
                if isinstance(e, (int, float)) and not isinstance(e, bool) and float(e).is_integer():
                    rows.append(row)
                else:
                    bad.append((n, line[:60]))
        return rows, bad

    def _write(self, rows: list[dict]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.path)

    def truncate_after(self, epoch: int) -> None:
        """Keep only points with epoch <= `epoch` (written atomically)."""
        self._write([r for r in self.read() if r.get("epoch", 0) <= epoch])

    def settle(self, epoch: int, backup: dict[int, list[dict]]) -> list[str]:
        """Make the file hold the rows of epochs 1..`epoch` once each, in order (written
        atomically, only if it changes). `backup` {epoch: its rows} (the copies saved with
        the checkpoints) rebuilds an epoch whose rows are missing or incomplete. Returns
        notices for the user: damaged lines, epochs rebuilt, epochs lost."""
        rows, bad = self.lines()
        if epoch == 0 and not self.path.exists():
            return []
        keyed: dict[tuple, dict] = {}
        for r in rows:                                   # a repeated row: its last copy, in its first place
            if r["epoch"] <= epoch:
                keyed[_key(r)] = r
        metric = lambda k: k[2] == ()                    # metric rows (not event rows such as a schedule's)
        members = {k[1] for k in keyed if metric(k)} | {int(r.get("member", -1)) for rs in backup.values()
                                                        for r in rs if _key(r)[2] == ()}
        out, rebuilt, lost = [], [], []
        for e in range(1, epoch + 1):
            have = [r for k, r in keyed.items() if k[0] == e]
            got = {k[1] for k in keyed if k[0] == e and metric(k)}
            if got != members or -1 not in got:
                if e in backup:
                    have, _ = backup[e], rebuilt.append(e)
                else:
                    lost.append(e)
            out.extend(have)
        notes = []
        if bad and not rebuilt and not lost:
            notes.append(f"{self.path}: dropped {len(bad)} unreadable line(s) after epoch {epoch} (cut by the "
                         f"stop; those epochs train again)")
        elif bad:
            where = ", ".join(f"line {n} ({text!r})" for n, text in bad[:3]) + (" ..." if len(bad) > 3 else "")
            notes.append(f"{self.path}: {len(bad)} damaged line(s) dropped: {where}")
        if rebuilt:
            notes.append(f"{self.path}: rebuilt the rows of epoch(s) {_ranges(rebuilt)} from the copies kept "
                         "with the checkpoints (progress.json)")
        if lost:
            notes.append(f"{self.path}: the rows of epoch(s) {_ranges(lost)} are lost (damaged, and no copy was "
                         "kept); the run goes on without them")
        if out != rows or bad:
            self._write(out)
        return notes

    def append(self, *rows: dict) -> None:
        """Append rows, flushed at once (a reader sees the epoch as it ends)."""
        with self.path.open("a") as f:
            for row in rows:
                f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
            f.flush()


def _key(row: dict) -> tuple:
    """(epoch, member or -1, the row's non-metric keys): what makes a row one of its own."""
    kind = tuple(sorted(k for k in row if "/" not in k and k not in ("epoch", "step", "member")))
    return int(row["epoch"]), int(row.get("member", -1)), kind


def _ranges(epochs: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out, start = [], None
    for i, e in enumerate(epochs):
        if start is None:
            start = e
        if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
            out.append(f"{start}-{e}" if e > start else f"{e}")
            start = None
    return ", ".join(out)


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
