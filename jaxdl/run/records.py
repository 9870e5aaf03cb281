"""Small JSON files keyed by epoch that live beside orbax checkpoints
(progress.json in a run dir, a workflow fit's history.json)."""
from __future__ import annotations

import json
from pathlib import Path


def write_epoch_record(path: Path, epoch: int, record, keep: int | None = None) -> None:
    """Set `record` for `epoch` in the JSON file `path` (an object keyed by epoch, kept
    beside checkpoints: progress.json, a fit's history.json), keeping only the newest
    `keep` epochs if given. Written to a temporary file and renamed, so a kill never
    leaves half a file."""
    path = Path(path)
    records = json.loads(path.read_text()) if path.exists() else {}
    records[str(epoch)] = record
    if keep is not None:
        records = {k: records[k] for k in sorted(records, key=int)[-keep:]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records))
    tmp.replace(path)


def read_epoch_record(path: Path, epoch: int):
    """The record of `epoch` in `path`, or None if the file or the epoch is missing."""
    path = Path(path)
    return json.loads(path.read_text()).get(str(epoch)) if path.exists() else None
